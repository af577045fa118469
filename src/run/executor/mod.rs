//! The executor: drives one run from its current state to the end. Every
//! change goes out as an [`Event`] through the [`Journal`], and is applied to
//! the in-memory [`RunState`] by the same fold a store uses to rebuild it, so
//! a run can be continued from whatever was stored.
//!
//! The driver's work is split by concern: deciding steps (`schedule`),
//! running attempts (`attempts`), child runs of sub-workflow steps
//! (`children`), waits for events and time, pausing and resuming
//! (`waits`), ending steps and the run (`ending`), picking up a stored run
//! (`resume`), and redacting secrets from events (`redact`).
//!
//! One scheduling round: decide every step whose dependencies are done
//! (skip, fail, or queue its units), start queued units up to the run's and
//! step's concurrency, commit the round's events, then wait for an attempt to
//! finish, a timer (retry backoff, sleep, wait timeout), an inbox message
//! (cancel, a posted event), cancellation or the run deadline. A run with
//! nothing running or ready and some step waiting is `paused`; a parked
//! driver then returns, and the service starts it again when a message
//! arrives or its first timer is due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod attempts;
mod cached;
mod children;
mod code;
mod ending;
mod redact;
mod resume;
mod schedule;
mod throttled;
mod waits;

use waits::{instant_at, next_message, sleep_until};

use super::cache::{CacheEntry, CacheStats, StepCache};
use super::children::{ChildStart, Children};
use super::event::{now_ms, Event, EventKind, Origin};
use super::inbox::Message;
use super::journal::{Journal, JournalError};
use super::secrets::Secrets;
use super::state::{RunState, RunStatus};
use super::throttle::Throttle;
use crate::limits::Caps;
use crate::sandbox::{Attempt, Module, Sandbox};
use crate::workflow::template::Scope;
use crate::workflow::Workflow;

/// Everything a run needs besides its state, resolved before it starts.
pub struct RunSpec {
    pub run_id: String,
    pub workflow: Arc<Workflow>,
    /// Loaded modules by the reference steps use.
    pub modules: HashMap<String, Arc<Module>>,
    pub secrets: Arc<Secrets>,
}

/// Runs workflows on a sandbox; shared by every run of the process.
pub struct Executor {
    sandbox: Arc<Sandbox>,
    /// Attempts running at once across every run of the process.
    slots: Arc<Semaphore>,
    caps: Caps,
    /// Where `cache:` steps find and record outputs; none: they always run.
    cache: Option<Arc<dyn StepCache>>,
    pub cache_stats: CacheStats,
    /// Where `throttle:` keys' slots are kept; none: throttles are not held.
    throttle: Option<Arc<dyn Throttle>>,
    /// The node whose attempts these are, recorded on each `step.started`.
    node: Option<String>,
    /// Whether attempts' HTTP requests carry a `traceparent`.
    tracing: bool,
    /// Where code runs' calls find their modules; none: such calls fail.
    modules: std::sync::OnceLock<Arc<dyn super::code::ModuleSource>>,
}

impl Executor {
    pub fn new(sandbox: Arc<Sandbox>, max_concurrent_attempts: usize, caps: Caps) -> Self {
        Executor {
            sandbox,
            slots: Arc::new(Semaphore::new(max_concurrent_attempts.max(1))),
            caps,
            cache: None,
            cache_stats: CacheStats::default(),
            throttle: None,
            node: None,
            tracing: false,
            modules: std::sync::OnceLock::new(),
        }
    }

    /// Where code workflows' calls find their modules (set once: the
    /// service gives its resolver to the executor it is given).
    pub fn set_modules(&self, modules: Arc<dyn super::code::ModuleSource>) {
        let _ = self.modules.set(modules);
    }

    /// Records `node` as the node of every attempt this executor starts.
    pub fn with_node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// Attempts' outgoing HTTP requests carry their span's `traceparent`
    /// (the server exports traces).
    pub fn with_tracing(mut self, tracing: bool) -> Self {
        self.tracing = tracing;
        self
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// Where `throttle:` slots are kept, when they are.
    pub fn throttle(&self) -> Option<&Arc<dyn Throttle>> {
        self.throttle.as_ref()
    }

    /// The first event of a new run: its input, checked against the
    /// workflow's declarations (defaults filled in).
    pub fn queue(spec: &RunSpec, input: &Value) -> Result<Event, Vec<String>> {
        let input = crate::workflow::inputs::resolve(&spec.workflow.inputs, input)?;
        Ok(Self::queued(spec, input))
    }

    /// The first event of a new run whose input was checked already.
    pub fn queued(spec: &RunSpec, input: Value) -> Event {
        Self::queued_from(spec, input, Origin::default())
    }

    /// The first event of a new run that came from `origin`.
    pub fn queued_from(spec: &RunSpec, input: Value, origin: Origin) -> Event {
        Event {
            seq: 1,
            run_id: spec.run_id.clone(),
            at_ms: now_ms(),
            kind: EventKind::RunQueued {
                workflow: spec.workflow.name.clone(),
                input,
                origin,
            },
        }
    }

    /// Drives the run to a terminal status. `state` is a fresh run (after
    /// [`Executor::queue`]) or one rebuilt from stored events: recorded
    /// outcomes stand, attempts in flight run again as new attempts with the
    /// same idempotency key, retry and sleep timers are re-armed.
    pub async fn execute(
        &self,
        spec: &RunSpec,
        state: RunState,
        journal: &dyn Journal,
        cancel: CancellationToken,
    ) -> Result<RunState, JournalError> {
        let controls = Controls {
            cancel,
            ..Controls::default()
        };
        self.execute_until(spec, state, journal, controls).await
    }

    /// Like [`Executor::execute`], with the run's inbox and a drain signal:
    /// once `drain` fires no new attempt starts; attempts in flight finish
    /// and are recorded, then this returns with the run unfinished, ready
    /// to be continued (graceful shutdown).
    pub async fn execute_until(
        &self,
        spec: &RunSpec,
        state: RunState,
        journal: &dyn Journal,
        controls: Controls,
    ) -> Result<RunState, JournalError> {
        let mut driver = Driver::new(self, spec, state, journal);
        driver.throttle_resume().await;
        driver.run(controls).await?;
        driver.throttle_settle().await;
        Ok(driver.state)
    }
}

/// How the outside reaches a running run.
#[derive(Default)]
pub struct Controls {
    /// Cancels the run (local runs: ctrl-c).
    pub cancel: CancellationToken,
    /// Stored requests to the run, each consumed in the commit of the
    /// events it causes.
    pub inbox: Option<mpsc::UnboundedReceiver<Message>>,
    /// Stop starting attempts and return with the run unfinished.
    pub drain: CancellationToken,
    /// Return once the run is paused or waits for child runs, holding no
    /// task meanwhile (the service starts it again). Without it (local
    /// runs) the driver waits.
    pub park: bool,
    /// Starts and cancels child runs (sub-workflow steps); without it such
    /// a step fails.
    pub children: Option<Arc<dyn Children>>,
}

/// A retry, sleep or wait timeout that fires at a wall-clock time (ms), so
/// it survives a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retry {
        step: usize,
        item: Option<usize>,
    },
    Sleep {
        step: usize,
    },
    WaitTimeout {
        step: usize,
    },
    /// A throttle key's rate window moved on: waiting keys ask again.
    Throttle,
}

type AttemptFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// What an attempt task hands back.
struct Done {
    step: usize,
    item: Option<usize>,
    attempt: u32,
    result: Attempt,
    /// Fuel set aside for the attempt under the run's budget (0: no budget).
    reserved: u64,
    /// Whether the budget, not the step's limit, set its fuel.
    capped: bool,
}

struct Driver<'a> {
    executor: &'a Executor,
    spec: &'a RunSpec,
    /// The run's workflow: the spec's, or for a code run its own, whose
    /// steps are the calls the code made.
    workflow: Arc<Workflow>,
    /// A code run's instance and calls.
    code: Option<Box<code::CodeRun>>,
    state: RunState,
    journal: &'a dyn Journal,
    /// Events emitted and applied, not yet appended to the journal.
    unsaved: Vec<Event>,
    /// Inbox messages answered by the unsaved events.
    consumed: Vec<i64>,
    tasks: JoinSet<Done>,
    /// One attempt runs inside the driver's own task: a sequential run then
    /// never pays for handing work between threads. Further concurrent
    /// attempts are spawned so they can use other cores.
    inline: Option<(usize, AttemptFuture)>,
    /// Items of each for_each step not yet succeeded.
    remaining: Vec<usize>,
    /// Running attempt tasks of each step, to stop a failed step's siblings.
    handles: Vec<Vec<tokio::task::AbortHandle>>,
    /// Units ready to start, per step.
    queued: Vec<VecDeque<Option<usize>>>,
    /// Attempts running, per step and in all.
    running: Vec<u32>,
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    /// Steps already decided (skipped, failed, queued, sleeping): a queued
    /// step stays `pending` until its first attempt starts.
    decided: Vec<bool>,
    /// Template scope of each started step (its dependencies' results).
    scopes: Vec<Option<Scope>>,
    /// Evaluated for_each items of each started step.
    items: Vec<Option<Arc<Vec<Value>>>>,
    /// The run's deadline (ms), from when it started.
    deadline_ms: Option<u64>,
    children: Option<Arc<dyn Children>>,
    /// Whether messages (posted events) can reach this run: not in a local run.
    has_inbox: bool,
    /// Child runs to start at the end of this round: (step, item, start).
    child_starts: Vec<(usize, Option<usize>, ChildStart)>,
    /// Child runs to cancel before the next commit.
    children_to_cancel: Vec<String>,
    /// Cached units to look up this round: (step, item, key).
    lookups: Vec<(usize, Option<usize>, String)>,
    /// Cached units looked up and missed (they run), with their keys.
    missed: HashMap<(usize, Option<usize>), String>,
    /// Outputs to record in the cache this round.
    cache_puts: Vec<CacheEntry>,
    /// Fuel the run's finished attempts consumed, and fuel set aside for
    /// its running ones (`budget.fuel`).
    fuel_used: u64,
    fuel_reserved: u64,
    /// Units waiting for `throttle:` slots, and the slots held.
    throttled: throttled::Throttled,
    /// The run moved to another version: the driver returns once the
    /// attempts in flight are recorded, and the run goes on under it.
    moving: bool,
}

impl<'a> Driver<'a> {
    fn new(executor: &'a Executor, spec: &'a RunSpec, state: RunState, journal: &'a dyn Journal) -> Self {
        let n = spec.workflow.steps.len();
        Driver {
            executor,
            spec,
            workflow: match spec.workflow.code {
                Some(_) => Arc::new(spec.workflow.for_calls()),
                None => spec.workflow.clone(),
            },
            code: None,
            state,
            journal,
            unsaved: Vec::new(),
            consumed: Vec::new(),
            tasks: JoinSet::new(),
            inline: None,
            remaining: vec![0; n],
            handles: vec![Vec::new(); n],
            queued: vec![VecDeque::new(); n],
            running: vec![0; n],
            timers: BinaryHeap::new(),
            decided: vec![false; n],
            scopes: vec![None; n],
            items: vec![None; n],
            deadline_ms: None,
            children: None,
            has_inbox: false,
            child_starts: Vec::new(),
            children_to_cancel: Vec::new(),
            lookups: Vec::new(),
            missed: HashMap::new(),
            cache_puts: Vec::new(),
            fuel_used: 0,
            fuel_reserved: 0,
            throttled: throttled::Throttled::new(n),
            moving: false,
        }
    }

    /// Records an event: applied to the state now, appended at the next commit.
    fn emit(&mut self, mut kind: EventKind) {
        if !self.spec.secrets.is_empty() {
            redact::redact(&self.spec.secrets, &mut kind);
        }
        let event = Event {
            seq: self.state.last_seq + 1,
            run_id: self.state.run_id.clone(),
            at_ms: now_ms(),
            kind,
        };
        self.state.apply(&event);
        self.unsaved.push(event);
    }

    async fn commit(&mut self) -> Result<(), JournalError> {
        self.deliver_child_cancels().await;
        if !self.unsaved.is_empty() || !self.consumed.is_empty() {
            self.journal.append_consuming(&self.unsaved, &self.consumed).await?;
            self.unsaved.clear();
            self.consumed.clear();
        }
        Ok(())
    }

    fn id(&self, step: usize) -> &str {
        &self.workflow.steps[step].id
    }

    async fn run(&mut self, controls: Controls) -> Result<(), JournalError> {
        let Controls {
            cancel,
            mut inbox,
            drain,
            park,
            children,
        } = controls;
        self.children = children;
        self.has_inbox = inbox.is_some();
        match self.state.status {
            RunStatus::Queued => self.emit(EventKind::RunStarted),
            RunStatus::Canceling => {
                self.finish_canceled("the run was canceled".into());
                return self.commit().await;
            }
            status if status.is_terminal() => return Ok(()),
            _ => {}
        }
        let started_ms = self.state.started_ms.unwrap_or_else(now_ms);
        self.deadline_ms = self.workflow.timeout.map(|t| started_ms + t.as_millis() as u64);
        self.rebuild_calls().await;
        self.resume();
        self.start_code();
        let mut draining = false;
        loop {
            // Requests stored before this round are answered before it starts anything.
            while let Some(message) = inbox.as_mut().and_then(|i| i.try_recv().ok()) {
                self.receive(message).await?;
            }
            draining |= self.moving;
            if self.code.is_some() && !draining {
                self.run_code().await;
            }
            if self.state.status.is_terminal() {
                return self.commit().await;
            }
            // Timers already due (a run started again for them) fire first,
            // and a deadline that passed while the run was paused ends it.
            if self.deadline_ms.is_some_and(|at| at <= now_ms()) {
                self.time_out().await;
                return self.commit().await;
            }
            self.fire_timers();
            if draining {
                if self.inline.is_none() && self.tasks.is_empty() {
                    return self.commit().await;
                }
            } else {
                self.schedule();
                self.launch();
                self.cache_round().await;
                self.throttle_round().await;
                self.start_children().await;
            }
            if self.state.status.is_terminal() {
                return self.commit().await;
            }
            if self.is_idle() && self.code_blocked() {
                if self.children_running() {
                    // A run with a deadline keeps its task to enforce it
                    // (only a paused run's first timer wakes it).
                    if park && self.deadline_ms.is_none() {
                        return self.commit().await;
                    }
                } else if !self.pause() {
                    if self.code.is_some() {
                        self.stop("internal error: the code awaits calls that cannot end".into());
                    } else {
                        self.complete();
                    }
                    return self.commit().await;
                } else if park {
                    return self.commit().await;
                }
            }
            self.commit().await?;
            // Outcomes applied since `run_code` (timers, cache hits) may
            // answer the code's await: go round again rather than wait.
            if !draining && self.code_answerable() {
                continue;
            }

            let next_timer = self.timers.peek().map(|Reverse((at, _))| instant_at(*at));
            let deadline = self.deadline_ms.map(instant_at);
            tokio::select! {
                biased;
                _ = drain.cancelled(), if !draining => draining = true,
                _ = cancel.cancelled() => self.cancel("canceled by request".into(), None).await?,
                Some(message) = next_message(&mut inbox) => self.receive(message).await?,
                _ = sleep_until(deadline), if deadline.is_some() => self.time_out().await,
                done = async { (&mut self.inline.as_mut().expect("checked by the guard").1).await }, if self.inline.is_some() => {
                    self.inline = None;
                    self.finished(done);
                    while let Some(joined) = self.tasks.try_join_next() {
                        self.joined(joined);
                    }
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.joined(joined);
                    // Group commit: take every attempt that already finished.
                    while let Some(joined) = self.tasks.try_join_next() {
                        self.joined(joined);
                    }
                }
                _ = sleep_until(next_timer), if next_timer.is_some() => self.fire_timers(),
                _ = throttled::Throttled::wake(self.throttled.released()), if self.throttled.is_waiting() => self.throttled.unblock(),
                event = code::next_code_event(&mut self.code), if !self.moving => self.code_event(event).await,
            }
        }
    }
}
