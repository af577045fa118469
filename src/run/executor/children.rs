//! Sub-workflow steps: each unit (each for_each item) starts a child run;
//! the child's end, reported through the run's inbox, ends the unit. A
//! step or run that stops takes its running children with it.

use serde_json::Value;

use super::Driver;
use crate::run::children::ChildStart;
use crate::run::event::{ErrorKind, EventKind, Origin, StepError};
use crate::run::state::StepStatus;
use crate::workflow::Action;

impl<'a> Driver<'a> {
    /// Queues the start of one unit's child run (started, with every other
    /// queued one, by [`Driver::start_children`]). A workflow already above
    /// this run, or one nested deeper than the cap, fails the step instead.
    pub(super) fn queue_child(&mut self, index: usize, item: Option<usize>, input: Value) {
        let step = &self.workflow.steps[index];
        let Action::Workflow { name, version } = &step.action else {
            return;
        };
        let mut ancestors = self.state.origin.ancestors.clone();
        ancestors.push(self.workflow.name.clone());
        let refused = if ancestors.contains(name) {
            Some(format!("workflow cycle: {} → {name}", ancestors.join(" → ")))
        } else if ancestors.len() > self.executor.caps.workflow_depth as usize {
            Some(format!(
                "sub-workflows nest at most {} levels below the root run",
                self.executor.caps.workflow_depth
            ))
        } else {
            None
        };
        if let Some(message) = refused {
            self.fail_step(
                index,
                item,
                None,
                StepError::new(ErrorKind::ChildFailed, message, false),
            );
            return;
        }
        let idempotency_key = match item {
            Some(i) => format!("{}/{}/{i}", self.state.run_id, step.id),
            None => format!("{}/{}", self.state.run_id, step.id),
        };
        let start = ChildStart {
            workflow: name.clone(),
            version: version.or_else(|| self.state.origin.workflows.get(name).copied()),
            input,
            idempotency_key,
            origin: Origin {
                parent_run_id: Some(self.state.run_id.clone()),
                parent_step_id: Some(step.id.clone()),
                ancestors,
                token: self.state.origin.token.clone(),
                traceparent: Some(crate::telemetry::ids::child_traceparent(
                    &self.state.run_id,
                    self.state.origin.traceparent.as_deref(),
                    &step.id,
                )),
                ..Origin::default()
            },
        };
        self.running[index] += 1;
        self.child_starts.push((index, item, start));
    }

    /// Starts every queued child run at once.
    pub(super) async fn start_children(&mut self) {
        if self.child_starts.is_empty() {
            return;
        }
        let starts = std::mem::take(&mut self.child_starts);
        let results = match &self.children {
            Some(children) => children.start(starts.iter().map(|(_, _, s)| s.clone()).collect()).await,
            None => starts
                .iter()
                .map(|_| Err("sub-workflows run on a server (`sandstep serve`), not in `sandstep run`".to_string()))
                .collect(),
        };
        for ((index, item, start), result) in starts.into_iter().zip(results) {
            if self.state.steps[index].status.is_terminal() {
                continue; // the step failed while its children were starting
            }
            match result {
                Ok(child) => self.emit(EventKind::StepChildStarted {
                    step: self.id(index).to_string(),
                    item,
                    child,
                }),
                Err(message) => {
                    self.running[index] = self.running[index].saturating_sub(1);
                    let message = format!("child run of workflow {}: {message}", start.workflow);
                    self.fail_step(
                        index,
                        item,
                        None,
                        StepError::new(ErrorKind::ChildFailed, message, false),
                    );
                }
            }
        }
    }

    /// A child run ended: its unit succeeds with the child's output, or the
    /// step fails with `child_failed` and the child's error.
    pub(super) fn child_ended(&mut self, child: &str, status: &str, output: Option<Value>, error: Option<String>) {
        let Some((index, unit)) = self.unit_of_child(child) else {
            return; // a unit that ended already (its step failed or was canceled)
        };
        self.running[index] = self.running[index].saturating_sub(1);
        let item = self.workflow.steps[index].for_each.as_ref().map(|_| unit);
        match status {
            "completed" => self.succeed_unit(index, item, None, output.unwrap_or(Value::Null)),
            status => {
                let message = match status {
                    "canceled" => format!("child run {child} was canceled"),
                    _ => format!("child run {child} failed: {}", error.unwrap_or_default()),
                };
                self.fail_step(
                    index,
                    item,
                    None,
                    StepError::new(ErrorKind::ChildFailed, message, false),
                );
            }
        }
    }

    fn unit_of_child(&self, child: &str) -> Option<(usize, usize)> {
        self.state.steps.values().enumerate().find_map(|(index, step)| {
            if step.status != StepStatus::Running {
                return None;
            }
            step.units
                .iter()
                .position(|u| u.child.as_deref() == Some(child) && !u.is_done())
                .map(|unit| (index, unit))
        })
    }

    /// Child runs of units not ended, of one step or of every step.
    pub(super) fn running_children(&self, step: Option<usize>) -> Vec<String> {
        self.state
            .steps
            .values()
            .enumerate()
            .filter(|(index, _)| step.is_none_or(|s| s == *index))
            .flat_map(|(_, state)| state.units.iter())
            .filter(|unit| !unit.is_done())
            .filter_map(|unit| unit.child.clone())
            .collect()
    }

    /// Whether a unit waits for a child run.
    pub(super) fn children_running(&self) -> bool {
        !self.running_children(None).is_empty()
    }

    /// Asks the children of `step` (or of every step) to cancel, at the
    /// next commit and before it.
    pub(super) fn cancel_children(&mut self, step: Option<usize>) {
        let children = self.running_children(step);
        self.children_to_cancel.extend(children);
    }

    /// Delivers the cancels asked for, before the events that stop their
    /// parent are committed: a crash in between repeats them.
    pub(super) async fn deliver_child_cancels(&mut self) {
        if self.children_to_cancel.is_empty() {
            return;
        }
        let runs = std::mem::take(&mut self.children_to_cancel);
        if let Some(children) = &self.children {
            let reason = format!("its parent run {} stopped", self.state.run_id);
            children.cancel(runs, reason).await;
        }
    }
}
