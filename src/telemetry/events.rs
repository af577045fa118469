//! What a span needs of each committed event: a [`TraceEvent`] holds the
//! step, item, attempt and times an event names, and none of its inputs or
//! outputs, so the journal hands the tracer a small copy.

use crate::run::event::{AttemptRecord, EventKind};
use crate::run::Event;
use crate::sandbox::{HttpUse, Level};

/// What a span needs of one event (no inputs or outputs are copied).
#[derive(Debug, Clone)]
pub struct TraceEvent {
    pub at_ms: u64,
    pub kind: TraceKind,
}

#[derive(Debug, Clone)]
pub enum TraceKind {
    /// A step began: evaluated its items, started an attempt, waited for
    /// a throttle slot, started a child run.
    StepBegan {
        step: String,
        items: Option<usize>,
    },
    AttemptStarted {
        step: String,
        item: Option<usize>,
        attempt: u32,
        node: Option<String>,
    },
    Cached {
        step: String,
        item: Option<usize>,
        from: String,
    },
    Log {
        step: String,
        item: Option<usize>,
        attempt: u32,
        level: Level,
        message: String,
    },
    Waiting {
        step: String,
        topic: Option<String>,
    },
    AttemptEnded {
        step: String,
        item: Option<usize>,
        record: Ended,
    },
    StepEnded {
        step: String,
        status: &'static str,
        error: Option<(String, String)>,
        resumed_by: Option<String>,
    },
    Paused,
    /// A code workflow's step call: the module it runs.
    Called {
        step: String,
        module: String,
        digest: String,
    },
    WorkflowLog {
        level: Level,
        message: String,
    },
    RunEnded {
        status: &'static str,
        error: Option<String>,
    },
}

/// The end of one attempt, as its record says.
#[derive(Debug, Clone)]
pub struct Ended {
    pub attempt: u32,
    pub duration_us: u64,
    pub fuel_consumed: u64,
    pub peak_memory: u64,
    pub error: Option<(String, String)>,
    /// The outbound HTTP requests the attempt made.
    pub http: Vec<HttpUse>,
}

impl Ended {
    fn of(record: &AttemptRecord) -> Ended {
        Ended {
            attempt: record.attempt,
            duration_us: record.duration_us,
            fuel_consumed: record.fuel_consumed,
            peak_memory: record.peak_memory,
            error: record
                .error
                .as_ref()
                .map(|e| (e.kind.as_str().to_string(), e.message.clone())),
            http: record.audit.as_ref().map(|a| a.http.clone()).unwrap_or_default(),
        }
    }
}

/// What `event` means to the spans (most events mean one thing; a step's
/// last attempt ends with the step).
pub fn convert(event: &Event, out: &mut Vec<TraceEvent>) {
    let at_ms = event.at_ms;
    let mut push = |kind| out.push(TraceEvent { at_ms, kind });
    let ended = |step: &str, item, record: &Option<AttemptRecord>| {
        record.as_ref().map(|r| TraceKind::AttemptEnded {
            step: step.to_string(),
            item,
            record: Ended::of(r),
        })
    };
    match &event.kind {
        EventKind::ItemSucceeded { step, item, record, .. } => {
            if let Some(kind) = ended(step, Some(*item), record) {
                push(kind);
            }
        }
        EventKind::StepSucceeded {
            step,
            record,
            traceparent,
            ..
        } => {
            if let Some(kind) = ended(step, None, record) {
                push(kind);
            }
            push(TraceKind::StepEnded {
                step: step.clone(),
                status: "succeeded",
                error: None,
                resumed_by: traceparent.clone(),
            });
        }
        EventKind::StepFailed {
            step,
            item,
            record,
            error,
        } => {
            if let Some(kind) = ended(step, *item, record) {
                push(kind);
            }
            push(TraceKind::StepEnded {
                step: step.clone(),
                status: "failed",
                error: Some((error.kind.as_str().to_string(), error.message.clone())),
                resumed_by: None,
            });
        }
        kind => {
            if let Some(kind) = one(kind) {
                push(kind);
            }
        }
    }
}

/// What an event that means one thing (or nothing) to the spans means.
fn one(kind: &EventKind) -> Option<TraceKind> {
    match kind {
        EventKind::StepExpanded { step, items } => Some(TraceKind::StepBegan {
            step: step.clone(),
            items: Some(*items),
        }),
        EventKind::StepThrottled { step, .. } | EventKind::StepChildStarted { step, .. } => {
            Some(TraceKind::StepBegan {
                step: step.clone(),
                items: None,
            })
        }
        EventKind::StepStarted {
            step,
            item,
            attempt,
            node,
            ..
        } => Some(TraceKind::AttemptStarted {
            step: step.clone(),
            item: *item,
            attempt: *attempt,
            node: node.clone(),
        }),
        EventKind::StepCached {
            step,
            item,
            cached_from,
        } => Some(TraceKind::Cached {
            step: step.clone(),
            item: *item,
            from: cached_from.clone(),
        }),
        EventKind::StepLog {
            step,
            item,
            attempt,
            level,
            message,
        } => Some(TraceKind::Log {
            step: step.clone(),
            item: *item,
            attempt: *attempt,
            level: *level,
            message: message.clone(),
        }),
        EventKind::StepWaiting { step, event, .. } => Some(TraceKind::Waiting {
            step: step.clone(),
            topic: event.clone(),
        }),
        EventKind::StepRetrying { step, item, record, .. } => Some(TraceKind::AttemptEnded {
            step: step.clone(),
            item: *item,
            record: Ended::of(record),
        }),
        EventKind::StepCanceled { step, reason } => Some(TraceKind::StepEnded {
            step: step.clone(),
            status: "canceled",
            error: Some(("canceled".to_string(), reason.clone())),
            resumed_by: None,
        }),
        EventKind::RunPaused { .. } => Some(TraceKind::Paused),
        EventKind::WorkflowCalled {
            name: Some(name),
            call: crate::run::code::CallRecord::Step { module, digest, .. },
            ..
        } => Some(TraceKind::Called {
            step: name.clone(),
            module: module.clone(),
            digest: digest.clone(),
        }),
        EventKind::WorkflowLog { level, message } => Some(TraceKind::WorkflowLog {
            level: *level,
            message: message.clone(),
        }),
        EventKind::RunCompleted { .. } => Some(TraceKind::RunEnded {
            status: "completed",
            error: None,
        }),
        EventKind::RunFailed { error } => Some(TraceKind::RunEnded {
            status: "failed",
            error: Some(error.clone()),
        }),
        EventKind::RunCanceled { reason } => Some(TraceKind::RunEnded {
            status: "canceled",
            error: Some(reason.clone()),
        }),
        _ => None,
    }
}

/// Whether an event ends the run's state here: it ended, or paused.
pub fn closes(kind: &TraceKind) -> bool {
    matches!(kind, TraceKind::RunEnded { .. } | TraceKind::Paused)
}
