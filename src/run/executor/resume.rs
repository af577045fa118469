//! Picking up a run rebuilt from its events: what was in flight is queued
//! again, retry, sleep and wait timers are re-armed, and units waiting for
//! a child run count as running.

use std::cmp::Reverse;
use std::sync::Arc;

use super::{Driver, Timer};
use crate::run::state::StepStatus;
use crate::workflow::Action;

impl<'a> Driver<'a> {
    /// Picks up a run rebuilt from events: re-queues what was in flight,
    /// re-arms timers.
    pub(super) fn resume(&mut self) {
        self.fuel_used = self.state.fuel_consumed();
        let workflow = self.workflow.clone();
        for (index, step) in workflow.steps.iter().enumerate() {
            let state = &self.state.steps[index];
            self.decided[index] = state.status != StepStatus::Pending;
            match state.status {
                StepStatus::Waiting => {
                    let timer = match step.action {
                        Action::Wait { .. } => Timer::WaitTimeout { step: index },
                        _ => Timer::Sleep { step: index },
                    };
                    if let Some(until) = state.waiting_until_ms {
                        self.timers.push(Reverse((until, timer)));
                    }
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
                    let units: Vec<(Option<usize>, Option<u64>, bool, bool)> = self.state.steps[index]
                        .units
                        .iter()
                        .enumerate()
                        .map(|(i, u)| {
                            let item = step.for_each.as_ref().map(|_| i);
                            (item, u.retry_at_ms, u.is_done(), u.child.is_some())
                        })
                        .collect();
                    self.remaining[index] = units.iter().filter(|(_, _, done, _)| !done).count();
                    let units = if units.is_empty() {
                        vec![(None, None, false, false)]
                    } else {
                        units
                    };
                    for (item, retry_at, done, child) in units {
                        match (done, child, retry_at) {
                            (true, _, _) => {}
                            // Its child runs on; its end reaches the inbox.
                            (false, true, _) => self.running[index] += 1,
                            (false, false, Some(at)) => {
                                self.timers.push(Reverse((at, Timer::Retry { step: index, item })))
                            }
                            (false, false, None) => self.queued[index].push_back(item),
                        }
                    }
                    self.maybe_finish_for_each(index);
                }
                _ => {}
            }
        }
    }
}
