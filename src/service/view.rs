//! The run resource the API answers: the row, and each step with its
//! attempts (duration, fuel, peak memory, error, captured logs), folded from
//! the run's events.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::run::{Event, EventKind, RunState, StepError};
use crate::sandbox::LogLine;
use crate::store::runs::RunRow;
use crate::workflow::{Action, Workflow};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub row: RunRow,
    /// Where the run came from (each field only when it applies).
    #[serde(flatten)]
    pub origin: OriginView,
    /// Fuel all of the run's recorded attempts consumed.
    pub fuel_consumed: u64,
    /// The run's fuel budget (`budget.fuel`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_fuel: Option<u64>,
    /// A run moved to its `version` by an upgrade: the version it came
    /// from (the last upgrade's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgraded_from: Option<i64>,
    /// Every step of the run's pinned version, in definition order, started
    /// or not. A code workflow's: the calls its code made that are steps
    /// (`step`, `child`, `sleep`, `wait-for-event`), in call order.
    pub steps: Vec<StepView>,
    /// A code workflow: its module, its code's own fuel and logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeView>,
}

/// What a code workflow's own code did (its calls are the run's steps).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CodeView {
    /// The workflow module, as the definition names it.
    pub module: String,
    /// Calls the code made (steps, children, sleeps, waits, values, awaits).
    pub calls: usize,
    /// Fuel and peak memory of the code itself, once it returned.
    pub fuel_consumed: u64,
    pub peak_memory: u64,
    pub logs: Vec<LogLine>,
}

/// [`crate::run::event::Origin`] without the reused outputs (the steps
/// show them).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct OriginView {
    /// A re-run: the run it re-ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    /// A trigger-started run: `{"schedule", "tick"}` or `{"event", "topic"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub trigger: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_step_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub id: String,
    /// `module`, `sleep`, `wait` or `workflow` (a sub-workflow).
    pub kind: &'static str,
    /// A code workflow's call: its position among the code's calls (the
    /// id `submit-*` returned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u32>,
    /// A code workflow's call: its row in call order (from 0). A call made
    /// while the call before it had not ended shares its row (calls
    /// submitted together, shown side by side); otherwise it starts the
    /// next row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u32>,
    /// A module step: the module reference (`name` or `name:tag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// A sub-workflow step: the child workflow's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The steps this one depends on: its `needs` and every step its
    /// templates read, in definition order.
    pub needs: Vec<String>,
    /// `pending`, `running`, `waiting`, `succeeded`, `failed`, `skipped` or
    /// `canceled`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// for_each: the number of items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    /// A `wait:` step waiting now: the topic as resolved and when it times
    /// out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitView>,
    /// A waiting step: the event topic it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// A waiting step: when its sleep ends or its wait times out (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_until_ms: Option<u64>,
    /// A wait that ended with an event: the event's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A re-run took this step's output from `rerun_of`; it did not run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// `cache:`: the step's output (every item's, for for_each) was a
    /// recorded one, from the run `cached_from` (the first item's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    /// for_each: how many items reused a recorded output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_items: Option<usize>,
    /// for_each: how many items wait for their `throttle:` key's slot now
    /// (a plain step waiting for one is `pending` with `reason: throttled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_items: Option<usize>,
    /// The `throttle:` key a waiting unit waits under (with `reason:
    /// throttled`; for a for_each, the first waiting item's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_key: Option<String>,
    /// A sub-workflow step: its child runs (one per for_each item).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub child_run_ids: Vec<String>,
    /// Fuel the step's attempts consumed (every item's).
    pub fuel_consumed: u64,
    pub attempts: Vec<AttemptView>,
}

/// What a waiting `wait:` step waits for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitView {
    /// The event topic, as rendered when the step started.
    pub topic: String,
    /// When the wait times out (RFC 3339, UTC); null without a timeout.
    pub timeout_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// `running`, `succeeded`, `failed`, `canceled` or `interrupted` (the
    /// process stopped while it ran; it ran again as the next attempt).
    pub status: &'static str,
    /// The input the attempt was given, as rendered, secrets redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub input: Option<Value>,
    pub idempotency_key: String,
    /// The node that ran the attempt (servers; absent for `sandstep run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When the attempt started and ended (ms since the epoch, as recorded
    /// with its events); no end while it runs.
    pub started_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_consumed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    pub logs: Vec<LogLine>,
    /// What the attempt used of its grants: hosts contacted (method,
    /// status, bytes), files opened under each grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::sandbox::Audit>,
}

pub fn run_view(row: RunRow, workflow: &Workflow, events: &[Event]) -> RunView {
    let state = RunState::from_events(&row.id, workflow, events);
    let (attempts, code_logs) = attempt_views(&state, events);
    let shapes = match &workflow.code {
        Some(_) => call_shapes(&state),
        None => graph_shapes(workflow),
    };
    let steps = shapes
        .into_iter()
        .filter_map(|shape| {
            let s = state.steps.get(shape.id.as_str())?;
            Some(step_view(shape, s, &attempts))
        })
        .collect();
    let origin = &state.origin;
    RunView {
        fuel_consumed: state.fuel_consumed(),
        budget_fuel: state.origin.budget_fuel,
        upgraded_from: state.upgraded.map(|(from, _)| from),
        row,
        origin: OriginView {
            rerun_of: origin.rerun_of.clone(),
            trigger: origin.trigger.clone(),
            parent_run_id: origin.parent_run_id.clone(),
            parent_step_id: origin.parent_step_id.clone(),
        },
        steps,
        code: workflow.code.as_ref().map(|code| CodeView {
            module: code.module.clone(),
            calls: state.calls.len(),
            fuel_consumed: state.workflow_fuel,
            peak_memory: state.workflow_memory,
            logs: code_logs,
        }),
    }
}

/// Every attempt of the run in the order they started, with its step, and
/// a code run's own log lines.
fn attempt_views(state: &RunState, events: &[Event]) -> (Vec<(String, AttemptView)>, Vec<LogLine>) {
    // Attempts in the order they started, keyed by (step, item, attempt).
    let mut attempts: Vec<(String, AttemptView)> = Vec::new();
    let mut index: HashMap<(String, Option<usize>, u32), usize> = HashMap::new();
    let mut code_logs = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::WorkflowLog { level, message } => code_logs.push(LogLine {
                level: *level,
                message: message.clone(),
            }),
            EventKind::StepStarted {
                step,
                item,
                attempt,
                idempotency_key,
                node,
                input,
                ..
            } => {
                index.insert((step.clone(), *item, *attempt), attempts.len());
                attempts.push((
                    step.clone(),
                    AttemptView {
                        attempt: *attempt,
                        item: *item,
                        status: "running",
                        input: input.clone(),
                        idempotency_key: idempotency_key.clone(),
                        node: node.clone(),
                        started_ms: event.at_ms,
                        ended_ms: None,
                        duration_us: None,
                        fuel_consumed: None,
                        peak_memory: None,
                        error: None,
                        logs: Vec::new(),
                        audit: None,
                    },
                ));
            }
            EventKind::StepLog {
                step,
                item,
                attempt,
                level,
                message,
            } => {
                if let Some(&i) = index.get(&(step.clone(), *item, *attempt)) {
                    attempts[i].1.logs.push(LogLine {
                        level: *level,
                        message: message.clone(),
                    });
                }
            }
            EventKind::StepSucceeded {
                step,
                record: Some(record),
                ..
            } => finish(&mut attempts, &index, step, None, record, event.at_ms),
            EventKind::ItemSucceeded {
                step,
                item,
                record: Some(record),
                ..
            } => finish(&mut attempts, &index, step, Some(*item), record, event.at_ms),
            EventKind::StepRetrying { step, item, record, .. } => {
                finish(&mut attempts, &index, step, *item, record, event.at_ms)
            }
            EventKind::StepFailed {
                step,
                item,
                record: Some(record),
                ..
            } => finish(&mut attempts, &index, step, *item, record, event.at_ms),
            EventKind::StepCanceled { step, .. } => {
                for (s, a) in attempts.iter_mut() {
                    if s == step && a.status == "running" {
                        a.status = "canceled";
                        a.ended_ms = Some(event.at_ms);
                    }
                }
            }
            _ => {}
        }
    }
    // An attempt still `running` whose unit no longer runs was interrupted
    // (the process stopped); it ran again as the next attempt.
    for (step, attempt) in attempts.iter_mut() {
        if attempt.status == "running" {
            let unit = state
                .steps
                .get(step.as_str())
                .and_then(|s| s.units.get(attempt.item.unwrap_or(0)));
            if unit.is_some_and(|u| u.running != Some(attempt.attempt)) {
                attempt.status = "interrupted";
            }
        }
    }
    (attempts, code_logs)
}

/// A code run's steps: its step-like calls, in call order.
fn call_shapes(state: &RunState) -> Vec<Shape> {
    state
        .calls
        .iter()
        .filter_map(|c| {
            let kind = c.call.step_kind()?;
            let (module, child) = match &c.call {
                crate::run::code::CallRecord::Step { module, digest, .. } if !digest.is_empty() => {
                    (Some(format!("{module}@{digest}")), None)
                }
                crate::run::code::CallRecord::Step { module, .. } => (Some(module.clone()), None),
                crate::run::code::CallRecord::Child { workflow, .. } => (None, Some(workflow.clone())),
                _ => (None, None),
            };
            Some(Shape {
                id: c.name.clone()?,
                kind,
                module,
                child,
                needs: Vec::new(),
                call: Some(c.position),
            })
        })
        .collect()
}

/// A YAML run's steps: the definition's, with what they need.
fn graph_shapes(workflow: &Workflow) -> Vec<Shape> {
    workflow
        .steps
        .iter()
        .map(|step| {
            let (kind, module, child) = match &step.action {
                Action::Module { reference, .. } => ("module", Some(reference.clone()), None),
                Action::Sleep(_) => ("sleep", None, None),
                Action::Wait { .. } => ("wait", None, None),
                Action::Workflow { name, .. } => ("workflow", None, Some(name.clone())),
            };
            Shape {
                id: step.id.clone(),
                kind,
                module,
                child,
                needs: step.deps.iter().map(|&d| workflow.steps[d].id.clone()).collect(),
                call: None,
            }
        })
        .collect()
}

/// One step of the run resource: its shape, its state and its attempts.
fn step_view(step: Shape, s: &crate::run::StepState, attempts: &[(String, AttemptView)]) -> StepView {
    let throttled = match s.status.is_terminal() {
        true => 0,
        false => s.units.iter().filter(|u| u.throttled.is_some()).count(),
    };
    let throttle_key = match throttled {
        0 => None,
        _ => s.units.iter().find_map(|u| u.throttled.clone()),
    };
    let reason = match s.status {
        crate::run::StepStatus::Pending if throttled > 0 => Some("throttled".to_string()),
        _ => s.reason.clone(),
    };
    let wait = match (step.kind, s.status, &s.waiting_for) {
        ("wait", crate::run::StepStatus::Waiting, Some(topic)) => Some(WaitView {
            topic: topic.clone(),
            timeout_at: s.waiting_until_ms.map(rfc3339),
        }),
        _ => None,
    };
    StepView {
        id: step.id.clone(),
        kind: step.kind,
        call: step.call,
        row: step.call.and(s.row),
        module: step.module,
        workflow: step.child,
        needs: step.needs,
        status: s.status.as_str(),
        output: s.output.clone(),
        error: s.error.clone(),
        reason,
        items: s.items,
        wait,
        waiting_for: s.waiting_for.clone(),
        waiting_until_ms: s.waiting_until_ms,
        event: s.event.clone(),
        reused: s.reused,
        cached: !s.units.is_empty() && s.units.iter().all(|u| u.cached_from.is_some()),
        cached_from: s.units.iter().find_map(|u| u.cached_from.clone()),
        cached_items: s
            .items
            .map(|_| s.units.iter().filter(|u| u.cached_from.is_some()).count())
            .filter(|n| *n > 0),
        throttled_items: s.items.map(|_| throttled).filter(|n| *n > 0),
        throttle_key,
        child_run_ids: s.units.iter().filter_map(|u| u.child.clone()).collect(),
        fuel_consumed: s.fuel_consumed(),
        attempts: attempts
            .iter()
            .filter(|(id, _)| *id == step.id)
            .map(|(_, a)| a.clone())
            .collect(),
    }
}

/// What the run resource shows of a step besides its state.
struct Shape {
    id: String,
    kind: &'static str,
    module: Option<String>,
    child: Option<String>,
    needs: Vec<String>,
    call: Option<u32>,
}

fn finish(
    attempts: &mut [(String, AttemptView)],
    index: &HashMap<(String, Option<usize>, u32), usize>,
    step: &str,
    item: Option<usize>,
    record: &crate::run::AttemptRecord,
    at_ms: u64,
) {
    if let Some(&i) = index.get(&(step.to_string(), item, record.attempt)) {
        let a = &mut attempts[i].1;
        a.ended_ms = Some(at_ms);
        a.status = if record.error.is_some() { "failed" } else { "succeeded" };
        a.duration_us = Some(record.duration_us);
        a.fuel_consumed = Some(record.fuel_consumed);
        a.peak_memory = Some(record.peak_memory);
        a.error = record.error.clone();
        a.audit = record.audit.clone();
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, with milliseconds).
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
