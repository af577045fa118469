//! Code runs in the driver: the workflow code's instance is a future the
//! driver polls in its own loop (no task of its own: a call and its answer
//! cross no thread), and sends each call past its journal here ([`Live`]).
//! A step-like call becomes a step of the run (compiled from the
//! definition's `defaults` and the call's options, its module resolved and
//! pinned by digest), recorded with `workflow.called`; the driver then runs
//! it like any step. Awaits are answered from the outcomes applied in the
//! round, and the code runs on until it blocks, so its next calls are
//! committed with those outcomes, after them in the journal: a crash that
//! loses an outcome loses what the code did with it too. When the code is
//! blocked on calls that all wait (a sleep, an event, a child run), the run
//! pauses and the instance is dropped; revival replays it from the journal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::Driver;
use calls::{placeholder, resolve};

mod calls;
use crate::run::code::host::{CodeHost, Journal, Live, Reply};
use crate::run::code::CallRecord;
use crate::run::event::{now_ms, ErrorKind, EventKind, StepError};
use crate::sandbox::{
    CallResult, HostAnswer, JournalClock, Module, WorkflowEnd, WorkflowFault, WorkflowInfo, WorkflowStart,
};
use crate::workflow::{CallAction, Step};

/// The code's instance running: replaying, then live, until it returns.
type Instance = std::pin::Pin<Box<dyn std::future::Future<Output = WorkflowEnd> + Send>>;

/// A code run's state in its driver.
pub(super) struct CodeRun {
    live: mpsc::UnboundedReceiver<Live>,
    instance: Option<Instance>,
    /// The code's await, until it can be answered.
    pending: Option<Pending>,
    /// Step index of each step-like call, by position.
    steps: HashMap<u32, usize>,
    /// Step-like calls not ended yet, and the order calls ended in.
    open: Vec<u32>,
    ended: HashMap<u32, u64>,
    ends: u64,
    /// Modules of the run's calls, by digest.
    pub(super) modules: HashMap<String, Arc<Module>>,
    /// The step of a module call, by its options' text: calls with the same
    /// options differ only in name, module and input, so each shape is
    /// compiled once per run.
    shapes: HashMap<String, Step>,
    /// The digest each module reference resolved to, by reference.
    references: HashMap<String, String>,
    /// Recorded calls the instance replayed, and how many it had to.
    replayed: Arc<AtomicUsize>,
    journal_len: usize,
    /// Whether the run's budget, not `workflow_limits.fuel`, set the
    /// instance's fuel.
    capped: bool,
    /// Where the instance sends its calls (taken when it starts).
    sender: Option<mpsc::UnboundedSender<Live>>,
}

struct Pending {
    ids: Vec<u32>,
    next: bool,
    /// The time of the call this await came with (a step-like call and its
    /// await in one message): the code's clocks read it, as when replaying.
    at_ms: Option<u64>,
    reply: oneshot::Sender<Reply>,
}

/// What the code did, for the driver's loop.
pub(super) enum CodeEvent {
    Live(Live),
    Ended(WorkflowEnd),
}

/// The code's next message or its end; never resolves for a YAML run.
pub(super) async fn next_code_event(code: &mut Option<Box<CodeRun>>) -> CodeEvent {
    let Some(code) = code.as_mut() else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        Some(live) = code.live.recv() => CodeEvent::Live(live),
        ended = async { code.instance.as_mut().expect("guarded").await }, if code.instance.is_some() => {
            code.instance = None;
            CodeEvent::Ended(ended)
        }
        else => std::future::pending().await,
    }
}

impl<'a> Driver<'a> {
    /// A code run: rebuilds the steps of its recorded calls (before
    /// `resume` looks at them) and loads their modules.
    pub(super) async fn rebuild_calls(&mut self) {
        let Some(code_def) = self.spec.workflow.code.as_ref() else {
            return;
        };
        let (sender, live) = mpsc::unbounded_channel();
        let mut run = CodeRun {
            live,
            instance: None,
            pending: None,
            steps: HashMap::new(),
            open: Vec::new(),
            ended: HashMap::new(),
            ends: 0,
            modules: HashMap::new(),
            shapes: HashMap::new(),
            references: HashMap::new(),
            replayed: Arc::new(AtomicUsize::new(0)),
            journal_len: self.state.calls.len(),
            capped: false,
            sender: Some(sender),
        };
        let mut failures = Vec::new();
        for recorded in self.state.calls.clone() {
            let Some(name) = recorded.name.clone().filter(|_| recorded.call.is_step()) else {
                continue;
            };
            let (action, input, options) = match &recorded.call {
                CallRecord::Step {
                    digest, input, options, ..
                } => {
                    if !digest.is_empty() && !run.modules.contains_key(digest) {
                        match resolve(self.executor, digest).await {
                            Ok(module) => {
                                run.modules.insert(digest.clone(), module);
                            }
                            Err(message) => failures.push((name.clone(), message)),
                        }
                    }
                    let step = run
                        .module_step(code_def, &name, digest, input.clone(), options)
                        .unwrap_or_else(|_| placeholder(code_def, &name));
                    let index = self.push_step(step);
                    run.steps.insert(recorded.position, index);
                    if !self.state.steps[index].status.is_terminal() {
                        run.open.push(recorded.position);
                    }
                    continue;
                }
                CallRecord::Child {
                    workflow,
                    input,
                    options,
                    ..
                } => (CallAction::Workflow(workflow.clone()), input.clone(), options.clone()),
                CallRecord::Sleep { duration_ms } => (
                    CallAction::Sleep(Duration::from_millis(*duration_ms)),
                    Value::Null,
                    Value::Null,
                ),
                CallRecord::Wait { topic, timeout_ms } => (
                    CallAction::Wait {
                        topic: topic.clone(),
                        timeout: timeout_ms.map(Duration::from_millis),
                    },
                    Value::Null,
                    Value::Null,
                ),
                _ => continue,
            };
            let step = code_def
                .compile_call(&name, action, input, &options)
                .unwrap_or_else(|_| placeholder(code_def, &name));
            let index = self.push_step(step);
            run.steps.insert(recorded.position, index);
            if !self.state.steps[index].status.is_terminal() {
                run.open.push(recorded.position);
            }
        }
        self.code = Some(Box::new(run));
        for (name, message) in failures {
            if let Some(index) = self.workflow.step_index(&name) {
                if !self.state.steps[index].status.is_terminal() {
                    self.fail_step(
                        index,
                        None,
                        None,
                        StepError::new(ErrorKind::ModuleError, message, false),
                    );
                }
            }
        }
    }

    /// Starts the code's instance: it replays the journal, then goes live.
    pub(super) fn start_code(&mut self) {
        let Some(sender) = self.code.as_mut().and_then(|c| c.sender.take()) else {
            return;
        };
        let code_def = self.spec.workflow.code.as_ref().expect("a code run");
        let Some(module) = self.spec.modules.get(&code_def.module).cloned() else {
            self.stop(format!(
                "module_error: the workflow module {} is not loaded",
                code_def.module
            ));
            return;
        };
        let mut outcomes = HashMap::new();
        for recorded in &self.state.calls {
            if let Some(result) = self.call_result(recorded.position) {
                outcomes.insert(recorded.position, result);
            }
        }
        let journal = Journal {
            calls: self.state.calls.clone(),
            outcomes,
            logs: self.state.workflow_logs,
        };
        let started_ms = self.state.started_ms.unwrap_or_else(now_ms);
        let clock = JournalClock::new(started_ms);
        let info = WorkflowInfo {
            run_id: self.state.run_id.clone(),
            workflow: self.workflow.name.clone(),
            version: self.workflow.version,
            created_ms: self.state.queued_ms,
            started_ms,
            trigger: self.state.origin.trigger.as_ref().map(Value::to_string),
            token: self.state.origin.token.clone(),
            parent_run_id: self.state.origin.parent_run_id.clone(),
        };
        let limits = code_def.limits.clone();
        let (fuel, capped) = match self.state.origin.budget_fuel {
            Some(budget) => {
                let left = budget.saturating_sub(self.state.fuel_consumed());
                (limits.fuel.min(left), left < limits.fuel)
            }
            None => (limits.fuel, false),
        };
        let (host, replayed) = CodeHost::new(journal, limits.calls, clock.clone(), info, sender);
        let seed = crate::run::code::seed_of(&self.state.run_id);
        let input = self.state.input.to_string();
        let sandbox = self.executor.sandbox.clone();
        let instance = async move {
            let start = WorkflowStart {
                input: &input,
                limits: &limits,
                fuel,
                seed,
                clock,
                started_ms,
            };
            // A panic in a host function fails this run, not its driver.
            std::panic::AssertUnwindSafe(sandbox.run_workflow(&module, start, Box::new(host)))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| WorkflowEnd {
                    ended: Err(WorkflowFault::Failed {
                        kind: "workflow_trap".into(),
                        message: "the workflow's host panicked".into(),
                    }),
                    fuel_consumed: 0,
                    peak_memory: 0,
                    duration: Duration::ZERO,
                })
        };
        let code = self.code.as_mut().expect("rebuilt first");
        code.instance = Some(Box::pin(instance));
        code.replayed = replayed;
        code.capped = capped;
    }

    /// Whether the code waits for calls none of which can end now: the
    /// run may pause (or park while children run).
    pub(super) fn code_blocked(&self) -> bool {
        let Some(code) = &self.code else {
            return true;
        };
        match &code.pending {
            None => false,
            Some(pending) => !self.answerable(pending),
        }
    }

    /// Whether the code's await can be answered now.
    pub(super) fn code_answerable(&self) -> bool {
        let pending = self.code.as_ref().and_then(|c| c.pending.as_ref());
        pending.is_some_and(|p| self.answerable(p))
    }

    fn answerable(&self, pending: &Pending) -> bool {
        let ended = |id: &u32| self.call_result(*id).is_some();
        if pending.next {
            pending.ids.iter().any(ended)
        } else {
            pending.ids.iter().all(ended)
        }
    }

    /// Answers the code's await from the outcomes applied so far and lets
    /// the code run until it blocks again, so that the calls it makes next
    /// ride this round's commit (as a YAML step started by a completion
    /// does): the journal records them after the outcomes they follow, so a
    /// crash that loses an outcome loses them too.
    pub(super) async fn run_code(&mut self) {
        loop {
            self.answer_awaits();
            let queued = |code: &mut Option<Box<CodeRun>>| code.as_mut().and_then(|c| c.live.try_recv().ok());
            let event = match queued(&mut self.code) {
                Some(live) => CodeEvent::Live(live),
                // Polling the instance runs the code until it blocks on
                // its next call, whose message is then queued.
                None => match next_code_event(&mut self.code).now_or_never() {
                    Some(event) => event,
                    None => match queued(&mut self.code) {
                        Some(live) => CodeEvent::Live(live),
                        None => return,
                    },
                },
            };
            self.code_event(event).await;
        }
    }

    /// Answers the code's await once the outcomes it returns are applied.
    fn answer_awaits(&mut self) {
        let Some(code) = self.code.as_mut() else {
            return;
        };
        // Calls ended since the last round, in the order seen.
        let open = std::mem::take(&mut code.open);
        let mut still_open = Vec::with_capacity(open.len());
        for position in open {
            let index = code.steps[&position];
            if self.state.steps[index].status.is_terminal() {
                code.ends += 1;
                code.ended.insert(position, code.ends);
            } else {
                still_open.push(position);
            }
        }
        code.open = still_open;
        let Some(pending) = code.pending.take() else {
            return;
        };
        if !self.answerable(&pending) {
            self.code.as_mut().expect("checked").pending = Some(pending);
            return;
        }
        let answer = if pending.next {
            let code = self.code.as_ref().expect("checked");
            let first = pending
                .ids
                .iter()
                .copied()
                .filter(|id| self.call_result(*id).is_some())
                .min_by_key(|id| code.ended.get(id).copied().unwrap_or(0))
                .expect("answerable");
            let at_ms = self.record(None, CallRecord::Await { returned: first });
            let result = self.call_result(first).expect("ended");
            Reply {
                answer: Ok(HostAnswer::Next(first, result)),
                at_ms: Some(at_ms),
            }
        } else {
            let results = pending
                .ids
                .iter()
                .map(|id| self.call_result(*id).expect("answerable"))
                .collect();
            Reply {
                answer: Ok(HostAnswer::All(results)),
                at_ms: pending.at_ms,
            }
        };
        let _ = pending.reply.send(answer);
    }

    /// The outcome of the call at `position`, once its step ended.
    fn call_result(&self, position: u32) -> Option<CallResult> {
        let index = *self.code.as_ref()?.steps.get(&position)?;
        // Positions are 1, 2, ... in the order calls were recorded.
        let recorded = self.state.calls.get(position.checked_sub(1)? as usize)?;
        crate::run::code::outcome(&self.state.steps[index], &recorded.call)
    }

    /// The code's instance ended: the run completes with what it returned,
    /// or fails naming why.
    async fn code_ended(&mut self, end: WorkflowEnd) {
        if self.state.status.is_terminal() {
            return;
        }
        let (replayed, journal_len, capped) = match &self.code {
            Some(code) => (code.replayed.load(Ordering::Relaxed), code.journal_len, code.capped),
            None => return,
        };
        let returned = end.ended.is_ok();
        if returned && replayed < journal_len {
            self.abort_all().await;
            self.stop(format!(
                "nondeterminism: the code returned after replaying {replayed} of the {journal_len} recorded calls"
            ));
            return;
        }
        if returned {
            self.emit(EventKind::WorkflowReturned {
                fuel_consumed: end.fuel_consumed,
                peak_memory: end.peak_memory,
            });
        }
        match end.ended {
            Ok(Ok(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(output) => {
                    self.abort_all().await;
                    self.cancel_open("the workflow returned before this call ended");
                    self.emit(EventKind::RunCompleted { output });
                }
                Err(e) => {
                    self.abort_all().await;
                    self.stop(format!("invalid_output: the workflow's output is not JSON: {e}"));
                }
            },
            Ok(Err(failure)) => {
                self.abort_all().await;
                // A call's failure the code passed on keeps its kind.
                let message = match failure.kind.as_str() {
                    "workflow_error" | "" => failure.message,
                    kind => format!("{kind}: {}", failure.message),
                };
                self.stop(format!("workflow_error: {message}"));
            }
            Err(WorkflowFault::Stopped(stop)) => {
                self.abort_all().await;
                self.stop(format!("{}: {}", stop.kind, stop.message));
            }
            Err(WorkflowFault::Failed { kind, message }) => {
                let (kind, message) = if kind == "fuel_exhausted" && capped {
                    (
                        "budget_exhausted".to_string(),
                        format!("the run's fuel budget ran out in the workflow's code ({message})"),
                    )
                } else {
                    (kind, message)
                };
                self.abort_all().await;
                self.stop(format!("{kind}: {message}"));
            }
        }
    }

    /// Steps still running or waiting when the code returned are canceled
    /// (their child runs too).
    fn cancel_open(&mut self, reason: &str) {
        self.cancel_children(None);
        self.timers.clear();
        self.queued.iter_mut().for_each(std::collections::VecDeque::clear);
        for index in 0..self.workflow.steps.len() {
            if !self.state.steps[index].status.is_terminal() {
                let step = self.workflow.steps[index].id.clone();
                self.emit(EventKind::StepCanceled {
                    step,
                    reason: reason.to_string(),
                });
            }
        }
    }

    /// Drops the code's instance (the run ended or stopped).
    pub(super) fn drop_code(&mut self) {
        if let Some(code) = self.code.as_mut() {
            code.instance = None;
            code.pending = None;
        }
    }
}
