//! Replaying a run's stored journal against a workflow module, outside any
//! driver: each recorded call is checked and answered as on revival, and
//! the replay stops where the code would go live. This is how a journal is
//! checked against another module (a new version, a module built from
//! other sources): a difference is the `nondeterminism` message a revival
//! would fail with.

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::host::{CodeHost, Journal, Live};
use super::outcome;
use crate::limits::WorkflowLimits;
use crate::run::event::{now_ms, Event};
use crate::run::state::RunState;
use crate::sandbox::{CallResult, JournalClock, Module, Sandbox, WorkflowFault, WorkflowInfo, WorkflowStart};
use crate::workflow::Workflow;

/// Where a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Every recorded call matched; the code's next call (at this
    /// position) would be made live.
    Live { position: u32 },
    /// Every recorded call matched and the code returned (or failed on its
    /// own) without another call: what it returned and the fuel it took.
    Ended { result: CallResult, fuel_consumed: u64 },
    /// A call differed from the recorded one: the `nondeterminism` message.
    Diverged(String),
    /// The code stopped before the journal's end for another reason
    /// (a trap, a limit): kind and message.
    Failed { kind: String, message: String },
}

/// Replays the run stored as `events` (a run of `workflow`, a code
/// workflow) against `module` under `limits`.
pub async fn replay(
    sandbox: &Sandbox,
    module: &Module,
    workflow: &Workflow,
    run_id: &str,
    events: &[Event],
    limits: &WorkflowLimits,
) -> Replayed {
    let state = RunState::from_events(run_id, &workflow.for_calls(), events);
    let outcomes = state
        .calls
        .iter()
        .filter_map(|call| {
            let step = state.steps.get(call.name.as_deref()?)?;
            Some((call.position, outcome(step, &call.call)?))
        })
        .collect();
    let recorded = state.calls.len();
    let journal = Journal {
        calls: state.calls.clone(),
        outcomes,
        logs: state.workflow_logs,
    };
    let started_ms = state.started_ms.unwrap_or_else(now_ms);
    let clock = JournalClock::new(started_ms);
    let info = WorkflowInfo {
        run_id: run_id.to_string(),
        workflow: workflow.name.clone(),
        version: workflow.version,
        created_ms: state.queued_ms,
        started_ms,
        trigger: state.origin.trigger.as_ref().map(ToString::to_string),
        token: state.origin.token.clone(),
        parent_run_id: state.origin.parent_run_id.clone(),
    };
    let (sender, mut live) = mpsc::unbounded_channel();
    let (host, replayed) = CodeHost::new(journal, limits.calls, clock.clone(), info, sender);
    let input = state.input.to_string();
    let start = WorkflowStart {
        input: &input,
        limits,
        fuel: limits.fuel,
        seed: super::seed_of(run_id),
        clock,
        started_ms,
    };
    let run = sandbox.run_workflow(module, start, Box::new(host));
    tokio::pin!(run);
    loop {
        tokio::select! {
            end = &mut run => {
                let replayed = replayed.load(Ordering::SeqCst);
                return match end.ended {
                    Err(WorkflowFault::Stopped(stop)) if stop.kind == "nondeterminism" => Replayed::Diverged(stop.message),
                    Err(WorkflowFault::Failed { kind, message }) if kind == "nondeterminism" => Replayed::Diverged(message),
                    Ok(_) if replayed < recorded => Replayed::Diverged(format!(
                        "the code returned after replaying {replayed} of the {recorded} recorded calls"
                    )),
                    Ok(result) => Replayed::Ended { result, fuel_consumed: end.fuel_consumed },
                    Err(WorkflowFault::Stopped(stop)) => Replayed::Failed { kind: stop.kind, message: stop.message },
                    Err(WorkflowFault::Failed { kind, message }) => Replayed::Failed { kind, message },
                };
            }
            Some(message) = live.recv() => {
                if let Live::Call { .. } = message {
                    return Replayed::Live { position: recorded as u32 + 1 };
                }
            }
        }
    }
}
