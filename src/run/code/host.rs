//! The host a code workflow's instance talks to. While the code replays,
//! each call is checked against the next recorded one and answered from
//! the journal (the recorded value, or the outcome of the step it named);
//! once the journal ends, calls go to the run's driver, which makes them
//! and records them. Outcomes not known when the instance started (steps
//! in flight then) are awaited from the driver too.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{call_input as parse_input, check_replay, input_digest, CallRecord, RecordedCall};
use crate::sandbox::{CallResult, HostAnswer, HostCall, HostStop, JournalClock, Level, WorkflowHost, WorkflowInfo};

/// What the code sends the driver.
pub enum Live {
    /// A call past the journal's end (or an await of an outcome not known
    /// when the instance started), answered on `reply`; with `awaited`, a
    /// step-like call answered with its result (`HostAnswer::All`) once it
    /// ends, not with its position.
    Call {
        call: HostCall,
        awaited: bool,
        reply: oneshot::Sender<Reply>,
    },
    /// A log line past the ones already recorded.
    Log(Level, String),
}

/// The driver's answer, with the time it recorded the call at (the code's
/// clocks read it), when it recorded one.
pub struct Reply {
    pub answer: Result<HostAnswer, HostStop>,
    pub at_ms: Option<u64>,
}

/// The journal as the instance starts: recorded calls, the outcomes known
/// now, and how many log lines were recorded.
pub struct Journal {
    pub calls: Vec<RecordedCall>,
    pub outcomes: HashMap<u32, CallResult>,
    pub logs: u32,
}

/// The instance's host.
pub struct CodeHost {
    journal: Journal,
    /// Recorded calls replayed so far (shared: the driver checks that the
    /// code did not end before replaying all of them).
    replayed: Arc<AtomicUsize>,
    /// Calls made (replayed and live): the next live call's position is this plus one.
    made: u32,
    max_calls: u32,
    names: HashSet<String>,
    logs_seen: u32,
    clock: JournalClock,
    info: WorkflowInfo,
    driver: mpsc::UnboundedSender<Live>,
}

fn stop(kind: &str, message: impl Into<String>) -> HostStop {
    HostStop {
        kind: kind.into(),
        message: message.into(),
    }
}

impl CodeHost {
    pub fn new(
        journal: Journal,
        max_calls: u32,
        clock: JournalClock,
        info: WorkflowInfo,
        driver: mpsc::UnboundedSender<Live>,
    ) -> (Self, Arc<AtomicUsize>) {
        let replayed = Arc::new(AtomicUsize::new(0));
        let host = CodeHost {
            journal,
            replayed: replayed.clone(),
            made: 0,
            max_calls,
            names: HashSet::new(),
            logs_seen: 0,
            clock,
            info,
            driver,
        };
        (host, replayed)
    }

    fn cursor(&self) -> usize {
        self.replayed.load(Ordering::Relaxed)
    }

    fn replaying(&self) -> bool {
        self.cursor() < self.journal.calls.len()
    }

    async fn live(&self, call: HostCall) -> Result<HostAnswer, HostStop> {
        self.send(call, false).await
    }

    async fn send(&self, call: HostCall, awaited: bool) -> Result<HostAnswer, HostStop> {
        let (reply, answer) = oneshot::channel();
        self.driver
            .send(Live::Call { call, awaited, reply })
            .map_err(|_| stop("stopped", "the run's driver is gone"))?;
        let reply = answer.await.map_err(|_| stop("stopped", "the run's driver is gone"))?;
        if let Some(at_ms) = reply.at_ms {
            self.clock.set(at_ms);
        }
        reply.answer
    }

    /// A new call: named calls must have a valid, unused name; the call
    /// count is bounded.
    fn admit(&mut self, name: Option<&str>) -> Result<(), HostStop> {
        if let Some(name) = name {
            crate::workflow::check_call_name(name).map_err(|m| stop("invalid_call", m))?;
            if !self.names.insert(name.to_string()) {
                return Err(stop(
                    "invalid_call",
                    format!(
                        "the call name {name:?} is used twice (names are unique within a run: use e.g. \"{name}-2\")"
                    ),
                ));
            }
        }
        if self.made >= self.max_calls {
            return Err(stop(
                "too_many_calls",
                format!(
                    "the code made more than the limit of {} calls (workflow_limits.calls)",
                    self.max_calls
                ),
            ));
        }
        self.made += 1;
        Ok(())
    }

    /// The recorded call at the cursor, checked against `new`; moves the
    /// cursor and the clock on.
    fn replay(&mut self, name: Option<&str>, new: &CallRecord) -> Result<RecordedCall, HostStop> {
        let recorded = self.journal.calls[self.cursor()].clone();
        check_replay(&recorded, name, new).map_err(|m| stop("nondeterminism", m))?;
        self.replayed.fetch_add(1, Ordering::Relaxed);
        self.clock.set(recorded.at_ms);
        Ok(recorded)
    }

    /// A call that starts something (a step, a child, a sleep, a wait).
    async fn submit(&mut self, name: String, record: CallRecord, call: HostCall) -> Result<HostAnswer, HostStop> {
        self.admit(Some(&name))?;
        if self.replaying() {
            let recorded = self.replay(Some(&name), &record)?;
            return Ok(HostAnswer::Submitted(recorded.position));
        }
        self.live(call).await
    }

    /// A call answered with a value the journal keeps (`now`, `random`).
    async fn value(&mut self, record: CallRecord, call: HostCall) -> Result<HostAnswer, HostStop> {
        self.admit(None)?;
        if self.replaying() {
            return match self.replay(None, &record)?.call {
                CallRecord::Now { value } | CallRecord::Random { value } => Ok(HostAnswer::Number(value)),
                _ => unreachable!("checked by replay"),
            };
        }
        self.live(call).await
    }

    /// Outcomes of `ids`: the ones known from the journal, the others from
    /// the driver (which answers once each has ended).
    async fn outcomes(&mut self, ids: &[u32]) -> Result<Vec<CallResult>, HostStop> {
        self.check_ids(ids)?;
        let missing: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !self.journal.outcomes.contains_key(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            match self.live(HostCall::AwaitAll(missing.clone())).await? {
                HostAnswer::All(results) => {
                    for (id, result) in missing.into_iter().zip(results) {
                        self.journal.outcomes.insert(id, result);
                    }
                }
                other => return Err(stop("internal", format!("unexpected answer {other:?}"))),
            }
        }
        Ok(ids.iter().map(|id| self.journal.outcomes[id].clone()).collect())
    }

    /// Every id must name a call that started something.
    fn check_ids(&self, ids: &[u32]) -> Result<(), HostStop> {
        if ids.is_empty() {
            return Err(stop("invalid_call", "await of no calls"));
        }
        match ids.iter().find(|&&id| id == 0 || id > self.made) {
            Some(id) => Err(stop(
                "invalid_call",
                format!("await of call {id}, which the code has not made"),
            )),
            None => Ok(()),
        }
    }

    async fn await_next(&mut self, ids: Vec<u32>) -> Result<HostAnswer, HostStop> {
        self.check_ids(&ids)?;
        self.admit(None)?;
        if self.replaying() {
            let recorded = self.replay(None, &CallRecord::Await { returned: 0 })?;
            let CallRecord::Await { returned } = recorded.call else {
                unreachable!("checked by replay")
            };
            if !ids.contains(&returned) {
                return Err(stop(
                    "nondeterminism",
                    format!(
                        "call {}: recorded await-next returning call {returned}, got await-next of calls {ids:?}",
                        recorded.position
                    ),
                ));
            }
            let result = self.outcomes(&[returned]).await?.remove(0);
            return Ok(HostAnswer::Next(returned, result));
        }
        let answer = self.live(HostCall::AwaitNext(ids)).await?;
        if let HostAnswer::Next(id, result) = &answer {
            self.journal.outcomes.insert(*id, result.clone());
        }
        Ok(answer)
    }
}

impl WorkflowHost for CodeHost {
    fn call(
        &mut self,
        call: HostCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<HostAnswer, HostStop>> + Send + '_>> {
        Box::pin(async move {
            match call {
                // Past the journal, the driver checks and records the call:
                // nothing to compare it with here.
                HostCall::Step { ref name, .. } | HostCall::Child { ref name, .. } if !self.replaying() => {
                    self.admit(Some(name))?;
                    self.live(call).await
                }
                HostCall::Step {
                    ref name,
                    ref module,
                    ref input,
                    ..
                } => {
                    let input = parse_input(input);
                    let record = CallRecord::Step {
                        module: module.clone(),
                        digest: String::new(),
                        input_digest: input_digest(&input),
                        input,
                        options: Value::Null,
                    };
                    self.submit(name.clone(), record, call).await
                }
                HostCall::Child {
                    ref name,
                    ref workflow,
                    ref input,
                    ..
                } => {
                    let input = parse_input(input);
                    let record = CallRecord::Child {
                        workflow: workflow.clone(),
                        input_digest: input_digest(&input),
                        input,
                        options: Value::Null,
                    };
                    self.submit(name.clone(), record, call).await
                }
                HostCall::Sleep { ref name, duration_ms } => {
                    self.submit(name.clone(), CallRecord::Sleep { duration_ms }, call).await
                }
                HostCall::Wait {
                    ref name,
                    ref topic,
                    timeout_ms,
                } => {
                    let record = CallRecord::Wait {
                        topic: topic.clone(),
                        timeout_ms,
                    };
                    self.submit(name.clone(), record, call).await
                }
                HostCall::StartChild {
                    ref name,
                    ref workflow,
                    ref input,
                } => {
                    self.admit(Some(name))?;
                    let record = CallRecord::StartChild {
                        workflow: workflow.clone(),
                        input_digest: input_digest(&parse_input(input)),
                        run_id: String::new(),
                    };
                    if self.replaying() {
                        return match self.replay(Some(name), &record)?.call {
                            CallRecord::StartChild { run_id, .. } => Ok(HostAnswer::Text(run_id)),
                            _ => unreachable!("checked by replay"),
                        };
                    }
                    self.live(call).await
                }
                HostCall::Now => self.value(CallRecord::Now { value: 0 }, call).await,
                HostCall::Random => self.value(CallRecord::Random { value: 0 }, call).await,
                HostCall::Patched(ref id) => {
                    // Replaying a journal recorded before the marker: the
                    // old path, and nothing is consumed.
                    let record = CallRecord::Patched { id: id.clone() };
                    if self.replaying() {
                        let recorded = &self.journal.calls[self.cursor()];
                        if !recorded.call.same_call(&record) {
                            return Ok(HostAnswer::Bool(false));
                        }
                        self.admit(None)?;
                        self.replay(None, &record)?;
                        return Ok(HostAnswer::Bool(true));
                    }
                    self.admit(None)?;
                    self.live(call).await
                }
                HostCall::AwaitNext(ids) => self.await_next(ids).await,
                HostCall::AwaitAll(ids) => Ok(HostAnswer::All(self.outcomes(&ids).await?)),
            }
        })
    }

    fn submit_and_await(
        &mut self,
        call: HostCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<CallResult, HostStop>> + Send + '_>> {
        Box::pin(async move {
            let live = matches!(call, HostCall::Step { .. } | HostCall::Child { .. }) && !self.replaying();
            if !live {
                let id = match self.call(call).await? {
                    HostAnswer::Submitted(id) => id,
                    other => return Err(stop("internal", format!("unexpected answer {other:?}"))),
                };
                return Ok(self.outcomes(&[id]).await?.remove(0));
            }
            // Past the journal: one message makes the call and awaits it.
            let name = match &call {
                HostCall::Step { name, .. } | HostCall::Child { name, .. } => name.clone(),
                _ => unreachable!("matched above"),
            };
            self.admit(Some(&name))?;
            match self.send(call, true).await? {
                HostAnswer::All(mut results) if results.len() == 1 => {
                    let result = results.remove(0);
                    self.journal.outcomes.insert(self.made, result.clone());
                    Ok(result)
                }
                other => Err(stop("internal", format!("unexpected answer {other:?}"))),
            }
        })
    }

    fn log(&mut self, level: Level, message: String) -> Result<(), HostStop> {
        self.logs_seen += 1;
        if self.logs_seen <= self.journal.logs {
            return Ok(());
        }
        self.driver
            .send(Live::Log(level, message))
            .map_err(|_| stop("stopped", "the run's driver is gone"))
    }

    fn info(&self) -> WorkflowInfo {
        self.info.clone()
    }
}
