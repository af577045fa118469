//! Re-running a run from a step: a new run of the same pinned workflow
//! version, linked by `rerun_of`, that takes the recorded outputs of every
//! step not downstream of the chosen ones and runs the rest again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::start::{RunRequest, Target};
use super::view::RunView;
use super::{RunError, Service, Started};
use crate::run::event::Origin;
use crate::run::{RunState, StepStatus};

/// Where a re-run starts.
#[derive(Debug, Clone)]
pub enum RerunFrom {
    /// This step and every step downstream of it.
    Step(String),
    /// Every failed step and every step downstream of one.
    Failed,
}

/// A re-run request.
#[derive(Debug, Clone)]
pub struct Rerun {
    pub from: RerunFrom,
    /// A new run input; every step reading `inputs` (and its dependents)
    /// runs again too.
    pub input: Option<Value>,
    /// The token that asks (its usage and daily budget).
    pub caller: Option<super::Caller>,
}

impl Service {
    /// Re-runs an ended run: see the module documentation. Answers like a
    /// start (with `wait`, once the new run has ended or `wait` is over).
    pub async fn rerun(
        self: &Arc<Self>,
        run_id: &str,
        rerun: Rerun,
        wait: Option<Duration>,
    ) -> Result<(Started, Option<RunView>), RunError> {
        let row = self.run_row(run_id).await?;
        if !row.is_ended() {
            return Err(RunError::Conflict(format!(
                "run {run_id} has not ended ({}): wait for it to end or cancel it before re-running it",
                row.status
            )));
        }
        let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
        let state = RunState::from_events(run_id, &workflow, &self.events(run_id, 0).await?);
        if workflow.code.is_some() {
            let origin = code_rerun(run_id, &state, &rerun)?;
            let request = RunRequest {
                budget_fuel: None,
                caller: rerun.caller,
                input: rerun.input.unwrap_or_else(|| row.input.clone()),
                idempotency_key: None,
                origin,
            };
            let target = Target {
                name: &row.workflow,
                version: Some(row.version),
                pinned: Some(&row.modules),
            };
            return self.start_one(target, request, wait).await;
        }
        let mut again: Vec<usize> = match &rerun.from {
            RerunFrom::Step(id) => {
                let index = workflow.step_index(id).ok_or_else(|| {
                    let ids: Vec<&str> = workflow.steps.iter().map(|s| s.id.as_str()).collect();
                    RunError::invalid(
                        "from",
                        format!(
                            "workflow {} has no step {id:?} (steps: {})",
                            row.workflow,
                            ids.join(", ")
                        ),
                    )
                })?;
                vec![index]
            }
            RerunFrom::Failed => {
                let failed: Vec<usize> = (0..workflow.steps.len())
                    .filter(|&i| state.steps[i].status == StepStatus::Failed)
                    .collect();
                if failed.is_empty() {
                    return Err(RunError::invalid(
                        "failed",
                        format!("run {run_id} has no failed step ({})", row.status),
                    ));
                }
                failed
            }
        };
        if rerun.input.is_some() {
            again.extend((0..workflow.steps.len()).filter(|&i| workflow.steps[i].reads_inputs));
        }
        let runs_again = workflow.downstream(again);
        let reused = workflow
            .steps
            .iter()
            .enumerate()
            .filter(|&(i, _)| !runs_again[i] && state.steps[i].status == StepStatus::Succeeded)
            .map(|(i, step)| (step.id.clone(), state.steps[i].output.clone().unwrap_or(Value::Null)))
            .collect();
        let request = RunRequest {
            budget_fuel: None,
            caller: rerun.caller,
            input: rerun.input.unwrap_or_else(|| row.input.clone()),
            idempotency_key: None,
            origin: Origin {
                rerun_of: Some(run_id.to_string()),
                reused,
                workflows: state.origin.workflows.clone(),
                ..Origin::default()
            },
        };
        let target = Target {
            name: &row.workflow,
            version: Some(row.version),
            pinned: Some(&row.modules),
        };
        self.start_one(target, request, wait).await
    }
}

/// A code run's re-run: the new run's journal starts with the calls made
/// before the call named `from` (or the first step-like call that failed),
/// which its code replays (steps reused, values as recorded), and goes on
/// live from there. A new input replays nothing.
fn code_rerun(run_id: &str, state: &RunState, rerun: &Rerun) -> Result<Origin, RunError> {
    let steps: Vec<&crate::run::code::RecordedCall> = state
        .calls
        .iter()
        .filter(|c| c.call.is_step() && c.name.is_some())
        .collect();
    let named = |c: &crate::run::code::RecordedCall| c.name.clone().unwrap_or_default();
    let status = |c: &crate::run::code::RecordedCall| state.steps.get(named(c).as_str()).map(|s| s.status);
    let stop = match &rerun.from {
        RerunFrom::Step(id) => steps
            .iter()
            .find(|c| named(c) == *id)
            .map(|c| c.position)
            .ok_or_else(|| {
                let names: Vec<String> = steps.iter().map(|c| named(c)).collect();
                RunError::invalid(
                    "from",
                    format!(
                        "run {run_id} made no call named {id:?} (its calls: {})",
                        names.join(", ")
                    ),
                )
            })?,
        RerunFrom::Failed => steps
            .iter()
            .find(|c| status(c) == Some(StepStatus::Failed))
            .map(|c| c.position)
            .ok_or_else(|| RunError::invalid("failed", format!("run {run_id} has no failed call")))?,
    };
    // Replay stops early at a step that did not succeed: its outcome is
    // not one to reuse.
    let stop = steps
        .iter()
        .find(|c| c.position < stop && status(c) != Some(StepStatus::Succeeded))
        .map_or(stop, |c| c.position);
    let mut origin = Origin {
        rerun_of: Some(run_id.to_string()),
        workflows: state.origin.workflows.clone(),
        ..Origin::default()
    };
    if rerun.input.is_some() {
        return Ok(origin);
    }
    origin.calls = state.calls.iter().filter(|c| c.position < stop).cloned().collect();
    for call in &origin.calls {
        if let (true, Some(name)) = (call.call.is_step(), &call.name) {
            let output = state.steps[name.as_str()].output.clone().unwrap_or(Value::Null);
            origin.reused.insert(name.clone(), output);
        }
    }
    Ok(origin)
}
