//! How steps and runs end: a step failing for good (with its
//! `on_failure`), timers firing, the run stopping, being canceled or
//! completing with its output.

use std::cmp::Reverse;
use std::collections::VecDeque;

use serde_json::Value;

use super::schedule::step_entry;
use super::{Driver, Timer};
use crate::run::event::{now_ms, AttemptRecord, EventKind, StepError};
use crate::run::journal::JournalError;
use crate::run::state::{RunStatus, StepStatus};
use crate::workflow::definition::OnFailure;

impl<'a> Driver<'a> {
    /// The run's deadline passed: running attempts stop and the run fails.
    pub(super) async fn time_out(&mut self) {
        let limit = self.workflow.timeout.unwrap_or_default();
        self.abort_all().await;
        self.stop(format!(
            "the run timed out after {}",
            crate::units::format_duration(limit)
        ));
    }

    /// Cancels the run: `canceling` is committed (with the request that
    /// asked for it), running attempts are stopped, then the run ends
    /// `canceled`. A run already ending only consumes the request.
    pub(super) async fn cancel(&mut self, reason: String, request: Option<i64>) -> Result<(), JournalError> {
        self.consumed.extend(request);
        if self.state.status.is_terminal() || self.state.status == RunStatus::Canceling {
            return Ok(());
        }
        self.emit(EventKind::RunCanceling { reason });
        self.commit().await?;
        self.abort_all().await;
        self.finish_canceled("the run was canceled".into());
        Ok(())
    }

    /// A step failed for good: its other items stop, then its `on_failure` applies.
    pub(super) fn fail_step(
        &mut self,
        index: usize,
        item: Option<usize>,
        record: Option<AttemptRecord>,
        error: StepError,
    ) {
        let workflow = self.workflow.clone();
        let step = &workflow.steps[index];
        self.queued[index].clear();
        for handle in self.handles[index].drain(..) {
            handle.abort();
        }
        if self.inline.as_ref().is_some_and(|(step, _)| *step == index) {
            self.inline = None;
        }
        self.running[index] = 0;
        self.timers.retain(
            |Reverse((_, timer))| {
                !matches!(timer, Timer::Retry { step, .. } | Timer::Sleep { step } | Timer::WaitTimeout { step } if *step == index)
            },
        );
        let message = error.to_string();
        self.emit(EventKind::StepFailed {
            step: step.id.clone(),
            item,
            record,
            error,
        });
        self.cancel_children(Some(index));
        if step.on_failure != OnFailure::Continue {
            // Running siblings are abandoned with the run.
            self.inline = None;
            self.tasks.abort_all();
            self.stop(format!("step {} failed: {message}", step.id));
        }
    }

    pub(super) fn fire_timers(&mut self) {
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
                Timer::Sleep { step } => self.sleep_over(step),
                Timer::WaitTimeout { step } => self.wait_timed_out(step),
                Timer::Throttle => self.throttled.unblock(),
            }
        }
    }

    /// Aborts every running attempt and waits until they are gone.
    pub(super) async fn abort_all(&mut self) {
        self.inline = None;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.running.iter_mut().for_each(|r| *r = 0);
    }

    /// Ends the run as failed: running steps are canceled, steps not started
    /// are skipped.
    pub(super) fn stop(&mut self, reason: String) {
        self.drop_code();
        self.cancel_children(None);
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
    pub(super) fn finish_canceled(&mut self, reason: String) {
        self.drop_code();
        self.cancel_children(None);
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
    pub(super) fn complete(&mut self) {
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
