//! Waits: steps that wait for a posted event or for time, and the run
//! pausing while nothing else can happen and resuming when a wait ends.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use super::{Driver, Timer};
use crate::run::event::{now_ms, ErrorKind, EventKind, StepError};
use crate::run::inbox::{Message, MessageKind, PostedEvent};
use crate::run::journal::JournalError;
use crate::run::state::{RunStatus, StepStatus};
use crate::workflow::template::{kind_of, Scope};
use crate::workflow::{check_topic, Action};

impl<'a> Driver<'a> {
    /// Answers one inbox message.
    pub(super) async fn receive(&mut self, message: Message) -> Result<(), JournalError> {
        match message.kind {
            MessageKind::Cancel { reason } => self.cancel(reason, Some(message.id)).await,
            MessageKind::Event { event } => {
                self.consumed.push(message.id);
                self.receive_event(&event);
                Ok(())
            }
            MessageKind::ChildEnded {
                child,
                status,
                output,
                error,
            } => {
                self.consumed.push(message.id);
                self.child_ended(&child, &status, output, error);
                Ok(())
            }
            MessageKind::Upgrade {
                version,
                after,
                modules,
            } => {
                self.consumed.push(message.id);
                self.upgrade(version, after, modules);
                Ok(())
            }
        }
    }

    /// Moves the run to another version of its workflow when nothing
    /// happened to it since the check the request was made after: the
    /// event is recorded, no attempt starts, and once those in flight are
    /// recorded the driver returns so the run goes on under the new
    /// version. A run that moved on meanwhile is left as it is.
    fn upgrade(&mut self, version: i64, after: u64, modules: std::collections::BTreeMap<String, String>) {
        let open = matches!(
            self.state.status,
            RunStatus::Queued | RunStatus::Running | RunStatus::Paused
        );
        if !open || self.moving || self.state.last_seq != after || version == self.spec.workflow.version {
            tracing::info!(run = %self.state.run_id, version, after, last = self.state.last_seq, "upgrade left: the run moved on since it was checked");
            return;
        }
        self.emit(EventKind::RunUpgraded {
            from: self.spec.workflow.version,
            to: version,
            modules,
        });
        self.moving = true;
        // The old code makes no call the check did not see.
        self.drop_code();
    }

    /// Starts a wait step: renders its topic and arms its timeout. The
    /// store hands the run, through its inbox, every event of that topic
    /// posted since the run was queued, and every one posted from now on.
    pub(super) fn start_wait(&mut self, index: usize, scope: Scope) {
        let step = &self.workflow.steps[index];
        let Action::Wait { topic, timeout, .. } = &step.action else {
            return;
        };
        let topic = match topic.render(&scope) {
            Ok(Value::String(topic)) => check_topic(&topic).map(|()| topic),
            Ok(other) => Err(format!("must be a string, got {}", kind_of(&other))),
            Err(message) => Err(message),
        };
        let topic = match topic {
            Ok(topic) => topic,
            Err(message) => {
                let error = StepError::new(ErrorKind::TemplateError, format!("wait.event: {message}"), false);
                self.fail_step(index, None, None, error);
                return;
            }
        };
        if !self.has_inbox && timeout.is_none() {
            let message = format!(
                "no event can reach a local run (`sandstep run`) and this wait for {topic:?} has no timeout: \
                 run the workflow on a server"
            );
            self.fail_step(
                index,
                None,
                None,
                StepError::new(ErrorKind::WaitTimeout, message, false),
            );
            return;
        }
        let until = timeout.map(|t| now_ms() + t.as_millis() as u64);
        self.emit(EventKind::StepWaiting {
            step: step.id.clone(),
            until_ms: until,
            event: Some(topic),
        });
        if let Some(until) = until {
            self.timers.push(Reverse((until, Timer::WaitTimeout { step: index })));
        }
        self.scopes[index] = Some(scope);
    }

    /// A posted event: every step waiting for its topic whose `match` is
    /// true of it succeeds with the event's data. An event this run already
    /// took, or one no step waits for now, changes nothing. A `match` that
    /// cannot be evaluated for this event (a field it lacks) is false.
    pub(super) fn receive_event(&mut self, event: &PostedEvent) {
        if !matches!(self.state.status, RunStatus::Running | RunStatus::Paused) {
            return;
        }
        if self.state.steps.values().any(|s| s.event.as_deref() == Some(&event.id)) {
            return;
        }
        for index in 0..self.workflow.steps.len() {
            let state = &self.state.steps[index];
            if state.status != StepStatus::Waiting || state.waiting_for.as_deref() != Some(event.topic.as_str()) {
                continue;
            }
            let Action::Wait { matches, .. } = &self.workflow.steps[index].action else {
                continue;
            };
            if let Some(matches) = matches {
                let seen = serde_json::json!({ "id": event.id, "topic": event.topic, "data": event.data });
                let scope = self.scopes[index].clone().unwrap_or_else(|| self.scope(index));
                if !matches.is_true(&scope.with_root("event", &seen)).unwrap_or(false) {
                    continue;
                }
            }
            self.wait_ended(index);
            self.emit(EventKind::StepSucceeded {
                step: self.id(index).to_string(),
                record: None,
                output: event.data.clone(),
                event: Some(event.id.clone()),
                traceparent: event.traceparent.clone(),
            });
        }
    }

    /// A sleep is over.
    pub(super) fn sleep_over(&mut self, index: usize) {
        if self.state.steps[index].status == StepStatus::Waiting {
            self.wait_ended(index);
            self.emit(EventKind::StepSucceeded {
                step: self.id(index).to_string(),
                record: None,
                output: Value::Null,
                event: None,
                traceparent: None,
            });
        }
    }

    /// A wait's timeout passed with no matching event: the step fails (not
    /// retried) and its `on_failure` applies.
    pub(super) fn wait_timed_out(&mut self, index: usize) {
        let state = &self.state.steps[index];
        if state.status != StepStatus::Waiting {
            return;
        }
        let topic = state.waiting_for.clone().unwrap_or_default();
        let timeout = match &self.workflow.steps[index].action {
            Action::Wait {
                timeout: Some(timeout), ..
            } => crate::units::format_duration(*timeout),
            _ => String::new(),
        };
        self.wait_ended(index);
        let message = format!("no event {topic:?} came within {timeout}");
        self.fail_step(
            index,
            None,
            None,
            StepError::new(ErrorKind::WaitTimeout, message, false),
        );
    }

    /// A step's wait ended: its timers go, and a paused run resumes.
    fn wait_ended(&mut self, index: usize) {
        self.timers.retain(|Reverse((_, timer))| {
            !matches!(timer, Timer::Sleep { step } | Timer::WaitTimeout { step } if *step == index)
        });
        if self.state.status == RunStatus::Paused {
            self.emit(EventKind::RunResumed);
        }
    }

    /// Nothing is running, ready to start or about to be retried.
    pub(super) fn is_idle(&self) -> bool {
        self.tasks.is_empty()
            && self.inline.is_none()
            && self.child_starts.is_empty()
            && self.queued.iter().all(VecDeque::is_empty)
            && !self.throttled.is_waiting()
            && !self
                .timers
                .iter()
                .any(|Reverse((_, timer))| matches!(timer, Timer::Retry { .. }))
    }

    /// An idle run with a step waiting is paused (`run.paused` once, with
    /// when its first timer or its deadline is due). False when no step
    /// waits: the run is over.
    pub(super) fn pause(&mut self) -> bool {
        if !self.state.steps.values().any(|s| s.status == StepStatus::Waiting) {
            return false;
        }
        if self.state.status == RunStatus::Running {
            let first_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let wake_ms = first_timer.into_iter().chain(self.deadline_ms).min();
            self.emit(EventKind::RunPaused { wake_ms });
        }
        true
    }
}

/// `at_ms` (wall clock) as an `Instant`.
pub(super) fn instant_at(at_ms: u64) -> Instant {
    let now = now_ms();
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now))
}

/// The next inbox message; never resolves without an inbox.
pub(super) async fn next_message(inbox: &mut Option<mpsc::UnboundedReceiver<Message>>) -> Option<Message> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
