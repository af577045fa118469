//! What a run's events recorded of each attempt: how it started (input,
//! arguments, environment, a lowered fuel limit, its idempotency key) and
//! how it ended (output or error, fuel), and of each code call the module
//! and options it named.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::run::code::CallRecord;
use crate::run::event::{AttemptRecord, StepError};
use crate::run::{Event, EventKind};

/// How an attempt ended, as recorded or as replayed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// `succeeded` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    pub fuel_consumed: u64,
}

impl Outcome {
    fn succeeded(output: Value, fuel_consumed: u64) -> Outcome {
        Outcome {
            status: "succeeded",
            output: Some(output),
            error: None,
            fuel_consumed,
        }
    }

    fn failed(error: StepError, fuel_consumed: u64) -> Outcome {
        Outcome {
            status: "failed",
            output: None,
            error: Some(error),
            fuel_consumed,
        }
    }

    /// An attempt's outcome as the sandbox gave it.
    pub fn of(attempt: &crate::sandbox::Attempt) -> Outcome {
        match (attempt.output(), attempt.failure()) {
            (Some(output), _) => Outcome::succeeded(output.clone(), attempt.fuel_consumed),
            (None, Some(failure)) => Outcome::failed(StepError::from_failure(failure), attempt.fuel_consumed),
            (None, None) => unreachable!("an attempt has an output or a failure"),
        }
    }
}

/// One recorded attempt of a module step.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub step: String,
    pub item: Option<usize>,
    pub attempt: u32,
    pub idempotency_key: String,
    pub input: Option<Value>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<(String, String)>>,
    pub fuel: Option<u64>,
    /// `None` when the run stopped before the attempt's end was recorded.
    pub outcome: Option<Outcome>,
}

/// Every attempt the events record, in the order they started.
pub fn attempts(events: &[Event]) -> Vec<Recorded> {
    let mut attempts: Vec<Recorded> = Vec::new();
    let mut index: HashMap<(String, Option<usize>, u32), usize> = HashMap::new();
    let ended = |attempts: &mut Vec<Recorded>,
                 index: &HashMap<_, usize>,
                 step: &String,
                 item: Option<usize>,
                 record: &AttemptRecord,
                 outcome: Outcome| {
        if let Some(&i) = index.get(&(step.clone(), item, record.attempt)) {
            attempts[i].outcome = Some(outcome);
        }
    };
    for event in events {
        match &event.kind {
            EventKind::StepStarted {
                step,
                item,
                attempt,
                idempotency_key,
                input,
                args,
                env,
                fuel,
                ..
            } => {
                index.insert((step.clone(), *item, *attempt), attempts.len());
                attempts.push(Recorded {
                    step: step.clone(),
                    item: *item,
                    attempt: *attempt,
                    idempotency_key: idempotency_key.clone(),
                    input: input.clone(),
                    args: args.clone(),
                    env: env.as_ref().map(|env| env.clone().into_iter().collect()),
                    fuel: *fuel,
                    outcome: None,
                });
            }
            EventKind::StepRetrying { step, item, record, .. } => {
                let error = record.error.clone().unwrap_or_else(unknown_error);
                ended(
                    &mut attempts,
                    &index,
                    step,
                    *item,
                    record,
                    Outcome::failed(error, record.fuel_consumed),
                );
            }
            EventKind::ItemSucceeded {
                step,
                item,
                record: Some(record),
                output,
            } => ended(
                &mut attempts,
                &index,
                step,
                Some(*item),
                record,
                Outcome::succeeded(output.clone(), record.fuel_consumed),
            ),
            EventKind::StepSucceeded {
                step,
                record: Some(record),
                output,
                ..
            } => ended(
                &mut attempts,
                &index,
                step,
                None,
                record,
                Outcome::succeeded(output.clone(), record.fuel_consumed),
            ),
            EventKind::StepFailed {
                step,
                item,
                record: Some(record),
                error,
            } => {
                let error = record.error.clone().unwrap_or_else(|| error.clone());
                ended(
                    &mut attempts,
                    &index,
                    step,
                    *item,
                    record,
                    Outcome::failed(error, record.fuel_consumed),
                );
            }
            _ => {}
        }
    }
    attempts
}

fn unknown_error() -> StepError {
    StepError::new(
        crate::run::event::ErrorKind::Trap,
        "the attempt failed (no error recorded)",
        false,
    )
}

/// A code run's module calls: the digest and options each step named.
pub fn module_calls(events: &[Event]) -> HashMap<String, (String, Value)> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::WorkflowCalled {
                name: Some(name),
                call: CallRecord::Step { digest, options, .. },
                ..
            } => Some((name.clone(), (digest.clone(), options.clone()))),
            _ => None,
        })
        .collect()
}

/// How a run's code ended, as its events recorded it: the returned fuel
/// and the output or the error.
pub struct CodeEnd {
    pub fuel_consumed: Option<u64>,
    pub output: Option<Value>,
    pub error: Option<String>,
}

pub fn code_end(events: &[Event]) -> CodeEnd {
    let mut end = CodeEnd {
        fuel_consumed: None,
        output: None,
        error: None,
    };
    for event in events {
        match &event.kind {
            EventKind::WorkflowReturned { fuel_consumed, .. } => end.fuel_consumed = Some(*fuel_consumed),
            EventKind::RunCompleted { output } => end.output = Some(output.clone()),
            EventKind::RunFailed { error } => end.error = Some(error.clone()),
            _ => {}
        }
    }
    end
}
