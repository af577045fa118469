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
