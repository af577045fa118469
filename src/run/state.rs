//! The state of one run, always the fold of its events ([`RunState::apply`]).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{AttemptRecord, Event, EventKind, StepError};
use crate::workflow::Workflow;

pub use super::status::{RunStatus, StepStatus};

/// One unit of work: a plain step, or one for_each item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitState {
    pub status: Option<StepStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Finished attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Attempts started (finished or not): the next one is `started + 1`.
    pub started: u32,
    /// An attempt started and not finished (in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
    /// When the next attempt is due, after a retryable failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    /// The run whose recorded output this unit reused (`cache:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    /// A sub-workflow unit: its child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
    /// Waiting for a slot of its throttle key (until its attempt starts):
    /// the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<String>,
}

impl UnitState {
    pub fn is_done(&self) -> bool {
        self.status.is_some_and(StepStatus::is_terminal)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Why the step was skipped or canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A sleeping step's wake-up time; a waiting step's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_until_ms: Option<u64>,
    /// The event topic a waiting step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The id of the event that resumed a wait step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A re-run took this step's output from the run it re-runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// for_each steps: the item count, once evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    /// One unit for a plain step, one per item for for_each.
    pub units: Vec<UnitState>,
    /// A code workflow's call: its row in call order. A call made while
    /// the call before it had not ended shares that call's row (calls
    /// submitted together); otherwise it starts the next row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u32>,
}

impl StepState {
    /// Fuel the step's recorded attempts consumed, every item's.
    pub fn fuel_consumed(&self) -> u64 {
        self.units
            .iter()
            .flat_map(|u| &u.attempts)
            .map(|a| a.fuel_consumed)
            .sum()
    }

    fn new() -> Self {
        StepState {
            status: StepStatus::Pending,
            output: None,
            error: None,
            reason: None,
            waiting_until_ms: None,
            waiting_for: None,
            event: None,
            reused: false,
            items: None,
            units: Vec::new(),
            row: None,
        }
    }

    /// Attempts over every unit.
    pub fn attempt_count(&self) -> usize {
        self.units.iter().map(|u| u.attempts.len()).sum()
    }

    fn unit(&mut self, item: Option<usize>) -> &mut UnitState {
        let index = item.unwrap_or(0);
        if self.units.len() <= index {
            self.units.resize_with(index + 1, UnitState::default);
        }
        &mut self.units[index]
    }

    fn succeeded(&mut self, record: Option<&AttemptRecord>, output: &Value, event: &Option<String>) {
        if let Some(record) = record {
            let unit = self.unit(None);
            unit.attempts.push(record.clone());
            unit.running = None;
            unit.status = Some(StepStatus::Succeeded);
            unit.output = Some(output.clone());
        } else if let Some(unit) = self.units.first_mut().filter(|_| self.items.is_none()) {
            // A plain step's child run ended.
            unit.status = Some(StepStatus::Succeeded);
            unit.output = Some(output.clone());
        }
        self.status = StepStatus::Succeeded;
        self.output = Some(output.clone());
        self.waiting_until_ms = None;
        self.waiting_for = None;
        self.event = event.clone();
    }

    fn failed(&mut self, item: Option<usize>, record: Option<&AttemptRecord>, error: &StepError) {
        if record.is_some() || item.is_some() {
            let unit = self.unit(item);
            if let Some(record) = record {
                unit.attempts.push(record.clone());
            }
            unit.running = None;
            unit.status = Some(StepStatus::Failed);
            unit.error = Some(error.clone());
        } else if let Some(unit) = self.units.first_mut().filter(|u| self.items.is_none() && !u.is_done()) {
            // A plain step failed before or without an attempt (its child run).
            unit.running = None;
            unit.status = Some(StepStatus::Failed);
            unit.error = Some(error.clone());
        }
        self.status = StepStatus::Failed;
        self.error = Some(error.clone());
        self.waiting_until_ms = None;
        self.waiting_for = None;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    pub workflow: String,
    pub status: RunStatus,
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: IndexMap<String, StepState>,
    /// The seq of the last event applied.
    pub last_seq: u64,
    /// When the run was queued and started (ms since the Unix epoch).
    #[serde(default)]
    pub queued_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Where the run came from (re-run, trigger, parent).
    #[serde(default)]
    pub origin: crate::run::event::Origin,
    /// A code workflow's recorded calls, in order (its journal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<crate::run::code::RecordedCall>,
    /// Lines a code workflow's code logged.
    #[serde(default)]
    pub workflow_logs: u32,
    /// Fuel and peak memory of a code workflow's own code, once it returned.
    #[serde(default)]
    pub workflow_fuel: u64,
    #[serde(default)]
    pub workflow_memory: u64,
    /// The last `run.upgraded`: the version the run came from and the one
    /// it went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgraded: Option<(i64, i64)>,
}

impl RunState {
    /// Fuel every recorded attempt of the run consumed.
    pub fn fuel_consumed(&self) -> u64 {
        self.steps.values().map(StepState::fuel_consumed).sum::<u64>() + self.workflow_fuel
    }

    /// A run of `workflow` before any event.
    pub fn new(run_id: &str, workflow: &Workflow) -> Self {
        RunState {
            run_id: run_id.into(),
            workflow: workflow.name.clone(),
            status: RunStatus::Queued,
            input: Value::Null,
            output: None,
            error: None,
            steps: workflow
                .steps
                .iter()
                .map(|s| (s.id.clone(), StepState::new()))
                .collect(),
            last_seq: 0,
            queued_ms: 0,
            started_ms: None,
            origin: Default::default(),
            calls: Vec::new(),
            workflow_logs: 0,
            workflow_fuel: 0,
            workflow_memory: 0,
            upgraded: None,
        }
    }

    /// Rebuilds a run from its stored events.
    pub fn from_events(run_id: &str, workflow: &Workflow, events: &[Event]) -> Self {
        let mut state = RunState::new(run_id, workflow);
        for event in events {
            state.apply(event);
        }
        state
    }

    fn step(&mut self, id: &str) -> &mut StepState {
        self.steps.entry(id.to_string()).or_insert_with(StepState::new)
    }

    /// Applies one event. Events are applied in `seq` order, each once.
    pub fn apply(&mut self, event: &Event) {
        self.last_seq = event.seq;
        match &event.kind {
            EventKind::RunQueued {
                workflow,
                input,
                origin,
            } => self.queued(workflow, input, origin, event.at_ms),
            EventKind::RunStarted => {
                self.status = RunStatus::Running;
                self.started_ms = Some(event.at_ms);
            }
            EventKind::RunPaused { .. } => self.status = RunStatus::Paused,
            EventKind::RunResumed => self.status = RunStatus::Running,
            EventKind::RunUpgraded { from, to, .. } => self.upgraded = Some((*from, *to)),
            EventKind::WorkflowCalled { position, name, call } => self.called(*position, name, call, event.at_ms),
            EventKind::WorkflowLog { .. } => self.workflow_logs += 1,
            EventKind::WorkflowReturned {
                fuel_consumed,
                peak_memory,
            } => {
                self.workflow_fuel = *fuel_consumed;
                self.workflow_memory = *peak_memory;
            }
            EventKind::RunCanceling { .. } => self.status = RunStatus::Canceling,
            EventKind::RunCompleted { output } => {
                self.status = RunStatus::Completed;
                self.output = Some(output.clone());
            }
            EventKind::RunFailed { error } => {
                self.status = RunStatus::Failed;
                self.error = Some(error.clone());
            }
            EventKind::RunCanceled { .. } => self.status = RunStatus::Canceled,
            step_event => self.apply_step(step_event),
        }
    }

    /// An event about one step (or one item or attempt of it).
    fn apply_step(&mut self, kind: &EventKind) {
        match kind {
            EventKind::StepExpanded { step, items } => {
                let step = self.step(step);
                step.status = StepStatus::Running;
                step.items = Some(*items);
                step.units = vec![UnitState::default(); *items];
            }
            EventKind::StepStarted {
                step, item, attempt, ..
            } => {
                let step = self.step(step);
                step.status = StepStatus::Running;
                let unit = step.unit(*item);
                unit.status = Some(StepStatus::Running);
                unit.started = unit.started.max(*attempt);
                unit.running = Some(*attempt);
                unit.retry_at_ms = None;
                unit.throttled = None;
            }
            EventKind::StepThrottled { step, item, key } => {
                self.step(step).unit(*item).throttled = Some(key.clone());
            }
            EventKind::StepLog { .. } => {}
            EventKind::StepCached {
                step,
                item,
                cached_from,
            } => {
                let step = self.step(step);
                step.status = StepStatus::Running;
                step.unit(*item).cached_from = Some(cached_from.clone());
            }
            EventKind::StepChildStarted { step, item, child } => {
                let step = self.step(step);
                step.status = StepStatus::Running;
                let unit = step.unit(*item);
                unit.status = Some(StepStatus::Running);
                unit.child = Some(child.clone());
            }
            EventKind::StepWaiting { step, until_ms, event } => {
                let step = self.step(step);
                step.status = StepStatus::Waiting;
                step.waiting_until_ms = *until_ms;
                step.waiting_for = event.clone();
            }
            EventKind::StepRetrying {
                step,
                item,
                record,
                retry_at_ms,
            } => {
                let unit = self.step(step).unit(*item);
                unit.attempts.push(record.clone());
                unit.running = None;
                unit.status = Some(StepStatus::Pending);
                unit.retry_at_ms = Some(*retry_at_ms);
            }
            EventKind::ItemSucceeded {
                step,
                item,
                record,
                output,
            } => {
                let unit = self.step(step).unit(Some(*item));
                unit.attempts.extend(record.clone());
                unit.running = None;
                unit.status = Some(StepStatus::Succeeded);
                unit.output = Some(output.clone());
            }
            EventKind::StepSucceeded {
                step,
                record,
                output,
                event,
                ..
            } => self.step(step).succeeded(record.as_ref(), output, event),
            EventKind::StepFailed {
                step,
                item,
                record,
                error,
            } => self.step(step).failed(*item, record.as_ref(), error),
            EventKind::StepSkipped { step, reason } => {
                let step = self.step(step);
                step.status = StepStatus::Skipped;
                step.reason = Some(reason.clone());
            }
            EventKind::StepCanceled { step, reason } => {
                let step = self.step(step);
                step.status = StepStatus::Canceled;
                step.reason = Some(reason.clone());
                for unit in &mut step.units {
                    unit.running = None;
                    if !unit.is_done() {
                        unit.status = Some(StepStatus::Canceled);
                    }
                }
            }
            _ => {}
        }
    }

    fn queued(&mut self, workflow: &str, input: &Value, origin: &crate::run::event::Origin, at_ms: u64) {
        self.workflow = workflow.to_owned();
        self.input = input.clone();
        self.status = RunStatus::Queued;
        self.queued_ms = at_ms;
        // A code re-run's replayed calls come first, in call order.
        for call in &origin.calls {
            if let (true, Some(name)) = (call.call.is_step(), &call.name) {
                self.step(name);
            }
            self.calls.push(call.clone());
        }
        for (id, output) in &origin.reused {
            let step = self.step(id);
            step.status = StepStatus::Succeeded;
            step.output = Some(output.clone());
            step.reused = true;
        }
        self.origin = origin.clone();
    }

    /// A call of a code run: a step-like call is a step of the run, shown
    /// in the row after the last step-like call if that one had ended.
    fn called(&mut self, position: u32, name: &Option<String>, call: &crate::run::code::CallRecord, at_ms: u64) {
        if let (Some(name), true) = (name, call.is_step()) {
            let before = self.calls.iter().rev().find(|c| c.call.is_step());
            let before = before.and_then(|c| self.steps.get(c.name.as_deref()?));
            let row = match before.map(|s| (s.row.unwrap_or(0), s.status.is_terminal())) {
                None => 0,
                Some((row, true)) => row + 1,
                Some((row, false)) => row,
            };
            self.step(name).row = Some(row);
        }
        self.calls.push(crate::run::code::RecordedCall {
            position,
            name: name.clone(),
            call: call.clone(),
            at_ms,
        });
    }
}
