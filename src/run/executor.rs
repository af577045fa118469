//! The executor: drives one run from its current state to the end. Every
//! change goes out as an [`Event`] through the [`Journal`], and is applied to
//! the in-memory [`RunState`] by the same fold a store uses to rebuild it, so
//! a run can be continued from whatever was stored.
//!
//! One scheduling round: decide every step whose dependencies are done
//! (skip, fail, or queue its units), start queued units up to the run's and
//! step's concurrency, commit the round's events, then wait for an attempt to
//! finish, a timer (retry backoff, sleep), cancellation or the run deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::event::{now_ms, AttemptRecord, Event, EventKind, StepError};
use super::journal::{Journal, JournalError};
use super::secrets::Secrets;
use super::state::{RunState, RunStatus, StepStatus};
use crate::limits::Caps;
use crate::sandbox::{Attempt, AttemptRequest, AttemptResult, Module, Sandbox, StepContext};
use crate::workflow::definition::{OnFailure, Trigger};
use crate::workflow::template::{kind_of, Scope};
use crate::workflow::{Action, ForEach, Workflow};

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
}

impl Executor {
    pub fn new(sandbox: Arc<Sandbox>, max_concurrent_attempts: usize, caps: Caps) -> Self {
        Executor {
            sandbox,
            slots: Arc::new(Semaphore::new(max_concurrent_attempts.max(1))),
            caps,
        }
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// The first event of a new run: its input, checked against the
    /// workflow's declarations (defaults filled in).
    pub fn queue(spec: &RunSpec, input: &Value) -> Result<Event, Vec<String>> {
        let input = crate::workflow::inputs::resolve(&spec.workflow.inputs, input)?;
        Ok(Event {
            seq: 1,
            run_id: spec.run_id.clone(),
            at_ms: now_ms(),
            kind: EventKind::RunQueued {
                workflow: spec.workflow.name.clone(),
                input,
            },
        })
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
        self.execute_until(spec, state, journal, cancel, CancellationToken::new())
            .await
    }

    /// Like [`Executor::execute`], but once `drain` fires no new attempt
    /// starts: attempts in flight finish and are recorded, then this returns
    /// with the run unfinished, ready to be continued (graceful shutdown).
    pub async fn execute_until(
        &self,
        spec: &RunSpec,
        state: RunState,
        journal: &dyn Journal,
        cancel: CancellationToken,
        drain: CancellationToken,
    ) -> Result<RunState, JournalError> {
        let mut driver = Driver::new(self, spec, state, journal);
        driver.run(cancel, drain).await?;
        Ok(driver.state)
    }
}

/// A retry or sleep that fires at a wall-clock time (ms), so it survives a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retry { step: usize, item: Option<usize> },
    Sleep { step: usize },
}

type AttemptFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// What an attempt task hands back.
struct Done {
    step: usize,
    item: Option<usize>,
    attempt: u32,
    result: Attempt,
}

struct Driver<'a> {
    executor: &'a Executor,
    spec: &'a RunSpec,
    workflow: &'a Workflow,
    state: RunState,
    journal: &'a dyn Journal,
    /// Events emitted and applied, not yet appended to the journal.
    unsaved: Vec<Event>,
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
    deadline: Option<Instant>,
}

impl<'a> Driver<'a> {
    fn new(executor: &'a Executor, spec: &'a RunSpec, state: RunState, journal: &'a dyn Journal) -> Self {
        let n = spec.workflow.steps.len();
        Driver {
            executor,
            spec,
            workflow: &spec.workflow,
            state,
            journal,
            unsaved: Vec::new(),
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
            deadline: spec.workflow.timeout.map(|t| Instant::now() + t),
        }
    }

    /// Records an event: applied to the state now, appended at the next commit.
    fn emit(&mut self, mut kind: EventKind) {
        if !self.spec.secrets.is_empty() {
            redact(&self.spec.secrets, &mut kind);
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
        if !self.unsaved.is_empty() {
            self.journal.append(&self.unsaved).await?;
            self.unsaved.clear();
        }
        Ok(())
    }

    fn id(&self, step: usize) -> &'a str {
        &self.workflow.steps[step].id
    }

    async fn run(&mut self, cancel: CancellationToken, drain: CancellationToken) -> Result<(), JournalError> {
        match self.state.status {
            RunStatus::Queued => self.emit(EventKind::RunStarted),
            RunStatus::Canceling => {
                self.finish_canceled("the run was canceled".into());
                return self.commit().await;
            }
            status if status.is_terminal() => return Ok(()),
            _ => {}
        }
        self.resume();
        let mut draining = false;
        loop {
            if draining {
                if self.inline.is_none() && self.tasks.is_empty() {
                    return self.commit().await;
                }
            } else {
                self.schedule();
                self.launch();
            }
            if self.state.status.is_terminal() {
                return self.commit().await;
            }
            if self.tasks.is_empty()
                && self.inline.is_none()
                && self.timers.is_empty()
                && self.queued.iter().all(VecDeque::is_empty)
            {
                self.complete();
                return self.commit().await;
            }
            self.commit().await?;

            let next_timer = self.timers.peek().map(|Reverse((at, _))| instant_at(*at));
            tokio::select! {
                biased;
                _ = drain.cancelled(), if !draining => draining = true,
                _ = cancel.cancelled() => {
                    self.emit(EventKind::RunCanceling { reason: "canceled by request".into() });
                    self.commit().await?;
                    self.abort_all().await;
                    self.finish_canceled("the run was canceled".into());
                }
                _ = sleep_until(self.deadline), if self.deadline.is_some() => {
                    let limit = self.workflow.timeout.unwrap_or_default();
                    self.abort_all().await;
                    self.stop(format!("the run timed out after {}", crate::units::format_duration(limit)));
                }
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
            }
        }
    }

    /// Picks up a run rebuilt from events: re-queues what was in flight,
    /// re-arms timers.
    fn resume(&mut self) {
        for (index, step) in self.workflow.steps.iter().enumerate() {
            let state = &self.state.steps[index];
            self.decided[index] = state.status != StepStatus::Pending;
            match state.status {
                StepStatus::Waiting => {
                    let until = state.waiting_until_ms.unwrap_or(0);
                    self.timers.push(Reverse((until, Timer::Sleep { step: index })));
                }
                StepStatus::Running => {
                    let scope = self.scope(index);
                    if step.for_each.is_some() {
                        match self.evaluate_items(index, &scope) {
                            Ok(items) => self.items[index] = Some(Arc::new(items)),
                            Err(error) => {
                                self.fail_step(index, None, None, error);
                                continue;
                            }
                        }
                    }
                    self.scopes[index] = Some(scope);
                    let units: Vec<(Option<usize>, Option<u64>, bool)> = self.state.steps[index]
                        .units
                        .iter()
                        .enumerate()
                        .map(|(i, u)| (step.for_each.as_ref().map(|_| i), u.retry_at_ms, u.is_done()))
                        .collect();
                    self.remaining[index] = units.iter().filter(|(_, _, done)| !done).count();
                    let units = if units.is_empty() {
                        vec![(None, None, false)]
                    } else {
                        units
                    };
                    for (item, retry_at, done) in units {
                        match (done, retry_at) {
                            (true, _) => {}
                            (false, Some(at)) => self.timers.push(Reverse((at, Timer::Retry { step: index, item }))),
                            (false, None) => self.queued[index].push_back(item),
                        }
                    }
                    self.maybe_finish_for_each(index);
                }
                _ => {}
            }
        }
    }

    /// Decides every pending step whose dependencies are all done.
    fn schedule(&mut self) {
        if self.state.status != RunStatus::Running {
            return;
        }
        loop {
            let mut changed = false;
            for index in 0..self.workflow.steps.len() {
                if self.decided[index] || self.state.steps[index].status != StepStatus::Pending {
                    continue;
                }
                let step = &self.workflow.steps[index];
                if step.deps.iter().any(|&d| !self.state.steps[d].status.is_terminal()) {
                    continue;
                }
                changed = true;
                self.decided[index] = true;
                self.start_step(index);
                if self.state.status != RunStatus::Running {
                    return;
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn start_step(&mut self, index: usize) {
        let step = &self.workflow.steps[index];
        if step.trigger == Trigger::AllSucceeded {
            let blocked = step
                .deps
                .iter()
                .find(|&&d| self.state.steps[d].status != StepStatus::Succeeded);
            if let Some(&dep) = blocked {
                let reason = format!("dependency {} {}", self.id(dep), self.state.steps[dep].status.as_str());
                self.emit(EventKind::StepSkipped {
                    step: step.id.clone(),
                    reason,
                });
                return;
            }
        }
        let scope = self.scope(index);
        if let Some(when) = &step.when {
            match when.is_true(&scope) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("when `{}` is false", when.source().trim());
                    self.emit(EventKind::StepSkipped {
                        step: step.id.clone(),
                        reason,
                    });
                    return;
                }
                Err(message) => {
                    self.fail_step(
                        index,
                        None,
                        None,
                        StepError::new("template_error", format!("when: {message}"), false),
                    );
                    return;
                }
            }
        }
        match &step.action {
            Action::Sleep(duration) => {
                let until = now_ms() + duration.as_millis() as u64;
                self.emit(EventKind::StepWaiting {
                    step: step.id.clone(),
                    until_ms: until,
                });
                self.timers.push(Reverse((until, Timer::Sleep { step: index })));
            }
            Action::Module { .. } if step.for_each.is_some() => match self.evaluate_items(index, &scope) {
                Err(error) => self.fail_step(index, None, None, error),
                Ok(items) => {
                    let count = items.len();
                    self.emit(EventKind::StepExpanded {
                        step: step.id.clone(),
                        items: count,
                    });
                    if count == 0 {
                        self.emit(EventKind::StepSucceeded {
                            step: step.id.clone(),
                            record: None,
                            output: Value::Array(vec![]),
                        });
                        return;
                    }
                    self.items[index] = Some(Arc::new(items));
                    self.scopes[index] = Some(scope);
                    self.remaining[index] = count;
                    self.queued[index].extend((0..count).map(Some));
                }
            },
            Action::Module { .. } => {
                self.scopes[index] = Some(scope);
                self.queued[index].push_back(None);
            }
        }
    }

    fn evaluate_items(&self, index: usize, scope: &Scope) -> Result<Vec<Value>, StepError> {
        let step = &self.workflow.steps[index];
        let value = match &step.for_each {
            Some(ForEach::Items(items)) => Value::Array(items.clone()),
            Some(ForEach::Template(template)) => template
                .render(scope)
                .map_err(|message| StepError::new("template_error", format!("for_each: {message}"), false))?,
            None => return Ok(Vec::new()),
        };
        let Value::Array(items) = value else {
            return Err(StepError::new(
                "for_each_error",
                format!("for_each must produce an array, got {}", kind_of(&value)),
                false,
            ));
        };
        if items.len() > self.executor.caps.for_each_items {
            return Err(StepError::new(
                "for_each_error",
                format!(
                    "for_each has {} items, more than the cap of {}",
                    items.len(),
                    self.executor.caps.for_each_items
                ),
                false,
            ));
        }
        Ok(items)
    }

    /// The template scope of a step: the run, its inputs, secrets, and the
    /// result of each step it depends on.
    fn scope(&self, index: usize) -> Scope {
        let steps = self.workflow.steps[index]
            .deps
            .iter()
            .map(|&dep| (self.id(dep).to_string(), step_entry(&self.state.steps[dep])))
            .collect();
        self.base_scope(steps)
    }

    fn base_scope(&self, steps: Map<String, Value>) -> Scope {
        let mut scope = Map::new();
        scope.insert("inputs".into(), self.state.input.clone());
        scope.insert("steps".into(), Value::Object(steps));
        scope.insert("run".into(), serde_json::json!({ "id": self.state.run_id }));
        scope.insert("workflow".into(), serde_json::json!({ "name": self.workflow.name }));
        if !self.spec.secrets.is_empty() {
            scope.insert("secrets".into(), self.spec.secrets.to_json());
        }
        Scope::new(scope)
    }

    /// Starts queued units while the run's and each step's concurrency allow.
    fn launch(&mut self) {
        if self.state.status != RunStatus::Running {
            return;
        }
        let total_limit = self.workflow.concurrency;
        for index in 0..self.workflow.steps.len() {
            let step_limit = self.workflow.steps[index].concurrency.unwrap_or(u32::MAX);
            while self.running.iter().sum::<u32>() < total_limit && self.running[index] < step_limit {
                let Some(item) = self.queued[index].pop_front() else {
                    break;
                };
                self.start_attempt(index, item);
                if self.state.steps[index].status != StepStatus::Running || self.state.status != RunStatus::Running {
                    break;
                }
            }
        }
    }

    fn start_attempt(&mut self, index: usize, item: Option<usize>) {
        let step = &self.workflow.steps[index];
        let Action::Module { reference, args } = &step.action else {
            return;
        };
        let base = self.scopes[index].clone().unwrap_or_else(|| self.scope(index));
        let scope = match (item, &self.items[index]) {
            (Some(i), Some(items)) => base.with_item(&items[i], i),
            _ => base,
        };
        let rendered = step.input.render(&scope).and_then(|input| {
            let args = args
                .iter()
                .map(|a| a.render(&scope).map(arg_text))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((input, args))
        });
        let (input, args) = match rendered {
            Ok(rendered) => rendered,
            Err(message) => {
                self.fail_step(
                    index,
                    item,
                    None,
                    StepError::new("template_error", format!("input: {message}"), false),
                );
                return;
            }
        };
        let Some(module) = self.spec.modules.get(reference).cloned() else {
            let error = StepError::new("module_error", format!("module {reference} is not loaded"), false);
            self.fail_step(index, item, None, error);
            return;
        };
        let unit = self.state.steps[index].units.get(item.unwrap_or(0));
        let attempt = unit.map_or(0, |u| u.started) + 1;
        let idempotency_key = match item {
            Some(i) => format!("{}/{}/{i}", self.state.run_id, step.id),
            None => format!("{}/{}", self.state.run_id, step.id),
        };
        self.emit(EventKind::StepStarted {
            step: step.id.clone(),
            item,
            attempt,
            idempotency_key: idempotency_key.clone(),
        });
        self.running[index] += 1;
        let context = StepContext {
            run_id: self.state.run_id.clone(),
            step_id: step.id.clone(),
            attempt,
            idempotency_key,
        };
        let input = input.to_string();
        let limits = step.limits.clone();
        let sandbox = self.executor.sandbox.clone();
        let slots = self.executor.slots.clone();
        let attempt_future = async move {
            let _slot = slots.acquire_owned().await;
            let result = sandbox
                .run(
                    &module,
                    AttemptRequest {
                        input: &input,
                        args: &args,
                        context: &context,
                        limits: &limits,
                    },
                )
                .await;
            Done {
                step: index,
                item,
                attempt,
                result,
            }
        };
        if self.inline.is_none() {
            self.inline = Some((index, Box::pin(attempt_future)));
        } else {
            let handle = self.tasks.spawn(attempt_future);
            self.handles[index].retain(|h| !h.is_finished());
            self.handles[index].push(handle);
        }
    }

    fn joined(&mut self, joined: Result<Done, tokio::task::JoinError>) {
        match joined {
            Ok(done) => self.finished(done),
            // Aborted tasks are accounted for by whoever aborted them; a panic
            // in an attempt task is a bug, logged where it ends.
            Err(error) if error.is_cancelled() => {}
            Err(error) => tracing::error!(%error, "attempt task panicked"),
        }
    }

    fn finished(&mut self, done: Done) {
        let Done {
            step: index,
            item,
            attempt,
            result,
        } = done;
        self.running[index] = self.running[index].saturating_sub(1);
        if self.state.steps[index].status != StepStatus::Running {
            return; // the step already failed (another item) or was canceled
        }
        let step = &self.workflow.steps[index];
        for line in &result.logs {
            self.emit(EventKind::StepLog {
                step: step.id.clone(),
                item,
                attempt,
                level: line.level,
                message: line.message.clone(),
            });
        }
        let mut record = AttemptRecord {
            attempt,
            duration_us: result.duration.as_micros() as u64,
            instantiate_us: result.instantiate.as_micros() as u64,
            fuel_consumed: result.fuel_consumed,
            peak_memory: result.peak_memory,
            error: None,
        };
        match result.result {
            AttemptResult::Succeeded { output } => match item {
                Some(i) => {
                    self.emit(EventKind::ItemSucceeded {
                        step: step.id.clone(),
                        item: i,
                        record,
                        output,
                    });
                    self.remaining[index] = self.remaining[index].saturating_sub(1);
                    self.maybe_finish_for_each(index);
                }
                None => self.emit(EventKind::StepSucceeded {
                    step: step.id.clone(),
                    record: Some(record),
                    output,
                }),
            },
            AttemptResult::Failed { error } => {
                let error = StepError::from_failure(&error);
                record.error = Some(error.clone());
                if error.retryable && attempt < step.retry.max_attempts {
                    let retry_at = now_ms() + step.retry.delay(attempt).as_millis() as u64;
                    self.emit(EventKind::StepRetrying {
                        step: step.id.clone(),
                        item,
                        record,
                        retry_at_ms: retry_at,
                    });
                    self.timers
                        .push(Reverse((retry_at, Timer::Retry { step: index, item })));
                } else {
                    self.fail_step(index, item, Some(record), error);
                }
            }
        }
    }

    /// Completes a for_each step once every item succeeded.
    fn maybe_finish_for_each(&mut self, index: usize) {
        let state = &self.state.steps[index];
        if state.status != StepStatus::Running || state.items.is_none() || self.remaining[index] > 0 {
            return;
        }
        let output = Value::Array(
            state
                .units
                .iter()
                .map(|u| u.output.clone().unwrap_or(Value::Null))
                .collect(),
        );
        self.emit(EventKind::StepSucceeded {
            step: self.id(index).to_string(),
            record: None,
            output,
        });
    }

    /// A step failed for good: its other items stop, then its `on_failure` applies.
    fn fail_step(&mut self, index: usize, item: Option<usize>, record: Option<AttemptRecord>, error: StepError) {
        let step = &self.workflow.steps[index];
        self.queued[index].clear();
        for handle in self.handles[index].drain(..) {
            handle.abort();
        }
        if self.inline.as_ref().is_some_and(|(step, _)| *step == index) {
            self.inline = None;
        }
        self.running[index] = 0;
        self.timers.retain(
            |Reverse((_, timer))| !matches!(timer, Timer::Retry { step, .. } | Timer::Sleep { step } if *step == index),
        );
        let message = error.to_string();
        self.emit(EventKind::StepFailed {
            step: step.id.clone(),
            item,
            record,
            error,
        });
        if step.on_failure != OnFailure::Continue {
            // Running siblings are abandoned with the run.
            self.inline = None;
            self.tasks.abort_all();
            self.stop(format!("step {} failed: {message}", step.id));
        }
    }

    fn fire_timers(&mut self) {
        let now = now_ms();
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Retry { step, item } => {
                    if self.state.steps[step].status == StepStatus::Running {
                        self.queued[step].push_back(item);
                    }
                }
                Timer::Sleep { step } => {
                    if self.state.steps[step].status == StepStatus::Waiting {
                        self.emit(EventKind::StepSucceeded {
                            step: self.id(step).to_string(),
                            record: None,
                            output: Value::Null,
                        });
                    }
                }
            }
        }
    }

    /// Aborts every running attempt and waits until they are gone.
    async fn abort_all(&mut self) {
        self.inline = None;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.running.iter_mut().for_each(|r| *r = 0);
    }

    /// Ends the run as failed: running steps are canceled, steps not started
    /// are skipped.
    fn stop(&mut self, reason: String) {
        self.timers.clear();
        self.queued.iter_mut().for_each(VecDeque::clear);
        for index in 0..self.workflow.steps.len() {
            let id = self.id(index).to_string();
            match self.state.steps[index].status {
                StepStatus::Running | StepStatus::Waiting => self.emit(EventKind::StepCanceled {
                    step: id,
                    reason: format!("run stopped: {reason}"),
                }),
                StepStatus::Pending => self.emit(EventKind::StepSkipped {
                    step: id,
                    reason: format!("run stopped: {reason}"),
                }),
                _ => {}
            }
        }
        self.emit(EventKind::RunFailed { error: reason });
    }

    /// Ends a run being canceled: every unfinished step is canceled.
    fn finish_canceled(&mut self, reason: String) {
        self.timers.clear();
        self.queued.iter_mut().for_each(VecDeque::clear);
        for index in 0..self.workflow.steps.len() {
            if !self.state.steps[index].status.is_terminal() {
                let id = self.id(index).to_string();
                self.emit(EventKind::StepCanceled {
                    step: id,
                    reason: reason.clone(),
                });
            }
        }
        self.emit(EventKind::RunCanceled { reason });
    }

    /// Every step is done: the run completes with its output.
    fn complete(&mut self) {
        if let Some(index) = self.state.steps.values().position(|s| !s.status.is_terminal()) {
            // Unreachable with a validated (acyclic) workflow; never hang.
            self.stop(format!("internal error: step {} can never start", self.id(index)));
            return;
        }
        let output = match &self.workflow.output {
            None => Ok(Value::Null),
            Some(template) => {
                let steps = self
                    .state
                    .steps
                    .iter()
                    .map(|(id, state)| (id.clone(), step_entry(state)))
                    .collect();
                template.render(&self.base_scope(steps))
            }
        };
        match output {
            Ok(output) => self.emit(EventKind::RunCompleted { output }),
            Err(message) => self.emit(EventKind::RunFailed {
                error: format!("output: {message}"),
            }),
        }
    }
}

/// What templates see of a finished step: `output` (alias `result`) and `status`.
fn step_entry(state: &super::state::StepState) -> Value {
    let output = state.output.clone().unwrap_or(Value::Null);
    serde_json::json!({ "output": output.clone(), "result": output, "status": state.status.as_str() })
}

/// A command argument: strings as they are, other values as JSON.
fn arg_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn instant_at(at_ms: u64) -> Instant {
    let now = now_ms();
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn redact(secrets: &Secrets, kind: &mut EventKind) {
    match kind {
        EventKind::StepLog { message, .. } => *message = secrets.redact(message),
        EventKind::StepRetrying { record, .. } => redact_record(secrets, record),
        EventKind::ItemSucceeded { record, output, .. } => {
            redact_record(secrets, record);
            secrets.redact_value(output);
        }
        EventKind::StepSucceeded { output, .. } | EventKind::RunCompleted { output } => secrets.redact_value(output),
        EventKind::StepFailed { record, error, .. } => {
            if let Some(record) = record {
                redact_record(secrets, record);
            }
            error.message = secrets.redact(&error.message);
        }
        EventKind::RunFailed { error } => *error = secrets.redact(error),
        _ => {}
    }
}

fn redact_record(secrets: &Secrets, record: &mut AttemptRecord) {
    if let Some(error) = &mut record.error {
        error.message = secrets.redact(&error.message);
    }
}
