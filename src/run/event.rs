//! Events: the append-only record of a run, and the only way its state
//! changes. [`RunState`](super::RunState) is the fold of a run's events, so a
//! durable store that keeps the events can rebuild any run and continue it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sandbox::{Failure, Level};

/// One event of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// 1, 2, 3, ... within the run.
    pub seq: u64,
    pub run_id: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The cost and outcome of one attempt, as recorded in events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub duration_us: u64,
    #[serde(default)]
    pub instantiate_us: u64,
    pub fuel_consumed: u64,
    pub peak_memory: u64,
    /// `None` when the attempt succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// What the attempt used of its grants (hosts, files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::sandbox::Audit>,
}

/// What kind of failure a step error is: an attempt's [`Failure`] kind, or
/// one the executor found before any attempt ran. Serialized as its
/// snake_case name (`fuel_exhausted`), as the API and events show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    GuestError,
    FuelExhausted,
    MemoryLimit,
    StackOverflow,
    Timeout,
    OutputTooLarge,
    LogsTooLarge,
    HostCallTooLarge,
    Trap,
    InvalidOutput,
    InstantiationFailed,
    /// The module needs a capability the step is not granted.
    CapabilityDenied,
    /// The attempt filled its scratch directory.
    ScratchFull,
    /// A template (`input`, `when`, `for_each`, `args`) could not be evaluated.
    TemplateError,
    /// `for_each` did not yield an array, or yielded too many items.
    ForEachError,
    /// The step's module is not loaded.
    ModuleError,
    /// A wait's timeout passed before a matching event came.
    WaitTimeout,
    /// A sub-workflow's child run failed, was canceled or could not start.
    ChildFailed,
    /// The run's fuel budget ran out.
    BudgetExhausted,
    /// A code workflow's call could not be made as asked (bad options, a
    /// module that is not a step).
    InvalidCall,
    /// The run stopped (or the code returned) before the call ended.
    Canceled,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::GuestError => "guest_error",
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::StackOverflow => "stack_overflow",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::LogsTooLarge => "logs_too_large",
            ErrorKind::HostCallTooLarge => "host_call_too_large",
            ErrorKind::Trap => "trap",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::InstantiationFailed => "instantiation_failed",
            ErrorKind::CapabilityDenied => "capability_denied",
            ErrorKind::ScratchFull => "scratch_full",
            ErrorKind::TemplateError => "template_error",
            ErrorKind::ForEachError => "for_each_error",
            ErrorKind::ModuleError => "module_error",
            ErrorKind::WaitTimeout => "wait_timeout",
            ErrorKind::ChildFailed => "child_failed",
            ErrorKind::BudgetExhausted => "budget_exhausted",
            ErrorKind::InvalidCall => "invalid_call",
            ErrorKind::Canceled => "canceled",
        }
    }

    /// The kind of an attempt's failure.
    pub fn of(failure: &Failure) -> Self {
        match failure {
            Failure::GuestError { .. } => ErrorKind::GuestError,
            Failure::FuelExhausted { .. } => ErrorKind::FuelExhausted,
            Failure::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            Failure::StackOverflow { .. } => ErrorKind::StackOverflow,
            Failure::Timeout { .. } => ErrorKind::Timeout,
            Failure::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            Failure::LogsTooLarge { .. } => ErrorKind::LogsTooLarge,
            Failure::HostCallTooLarge { .. } => ErrorKind::HostCallTooLarge,
            Failure::Trap { .. } => ErrorKind::Trap,
            Failure::InvalidOutput { .. } => ErrorKind::InvalidOutput,
            Failure::InstantiationFailed { .. } => ErrorKind::InstantiationFailed,
            Failure::CapabilityDenied { .. } => ErrorKind::CapabilityDenied,
            Failure::ScratchFull { .. } => ErrorKind::ScratchFull,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a step (or one of its items, or one attempt) failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
    pub retryable: bool,
}

impl StepError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, retryable: bool) -> Self {
        StepError {
            kind,
            message: message.into(),
            retryable,
        }
    }

    pub fn from_failure(failure: &Failure) -> Self {
        let message = match failure {
            Failure::GuestError { message, .. } => message.clone(),
            other => other.to_string(),
        };
        StepError {
            kind: ErrorKind::of(failure),
            message,
            retryable: failure.retryable(),
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What happened. `item` is the for_each index, absent for plain steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    #[serde(rename = "run.queued")]
    RunQueued {
        workflow: String,
        input: Value,
        #[serde(flatten)]
        origin: Origin,
    },
    #[serde(rename = "run.started")]
    RunStarted,
    /// for_each was evaluated: the step has this many items.
    #[serde(rename = "step.expanded")]
    StepExpanded { step: String, items: usize },
    /// An attempt began.
    #[serde(rename = "step.started")]
    StepStarted {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        attempt: u32,
        idempotency_key: String,
        /// The node that runs the attempt (a server's; none in `sandstep run`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// The input as rendered for this attempt, secrets redacted (absent
        /// in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
        /// The rendered arguments of a command module's attempt (absent
        /// when the step has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args: Option<Vec<String>>,
        /// The rendered environment, secrets redacted (absent when the
        /// step sets none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<indexmap::IndexMap<String, String>>,
        /// The fuel limit when the run's budget lowered it below the
        /// step's (absent otherwise: the step's limit applies).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fuel: Option<u64>,
    },
    /// A cached step (or item) reused the output recorded by `cached_from`'s
    /// attempt; no wasm ran. `step.succeeded` (or `step.item_succeeded`) follows.
    #[serde(rename = "step.cached")]
    StepCached {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        cached_from: String,
    },
    /// A unit of a throttled step (or workflow) waits for its key's slot
    /// or rate window (`throttle:`); it starts later with `step.started`.
    #[serde(rename = "step.throttled")]
    StepThrottled {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        /// The key it waits under (the step's, else the workflow's).
        key: String,
    },
    #[serde(rename = "step.log")]
    StepLog {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        attempt: u32,
        level: Level,
        message: String,
    },
    /// A sleep step is waiting until `until_ms`; a wait step for an event
    /// of topic `event`, until `until_ms` if it has a timeout.
    #[serde(rename = "step.waiting")]
    StepWaiting {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// An attempt failed and another will start at `retry_at_ms`.
    #[serde(rename = "step.retrying")]
    StepRetrying {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        record: AttemptRecord,
        retry_at_ms: u64,
    },
    /// A sub-workflow step (or one of its items) started its child run.
    #[serde(rename = "step.child_started")]
    StepChildStarted {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        child: String,
    },
    /// One for_each item succeeded (`record`: its attempt, none for a child run).
    #[serde(rename = "step.item_succeeded")]
    ItemSucceeded {
        step: String,
        item: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<AttemptRecord>,
        output: Value,
    },
    /// The step succeeded (for_each: all items did; `output` is their array;
    /// a wait: `event` is the id of the event whose data is the output).
    #[serde(rename = "step.succeeded")]
    StepSucceeded {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<AttemptRecord>,
        output: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        /// A wait: the `traceparent` the event was posted with (its span
        /// links to it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
    },
    /// The step failed for good (for_each: `item` is the item that failed).
    #[serde(rename = "step.failed")]
    StepFailed {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<AttemptRecord>,
        error: StepError,
    },
    #[serde(rename = "step.skipped")]
    StepSkipped { step: String, reason: String },
    /// The step was running (or waiting) when the run stopped.
    #[serde(rename = "step.canceled")]
    StepCanceled { step: String, reason: String },
    /// Nothing is running or ready: every unfinished step waits (for an
    /// event or a time). `wake_ms` is when the first timer is due.
    #[serde(rename = "run.paused")]
    RunPaused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wake_ms: Option<u64>,
    },
    /// A wait of a paused run ended: the run goes on.
    #[serde(rename = "run.resumed")]
    RunResumed,
    /// The run moved from version `from` of its workflow to `to`, after a
    /// check that its history fits `to`; `modules` are the module digests
    /// it is pinned to from here on, by reference.
    #[serde(rename = "run.upgraded")]
    RunUpgraded {
        from: i64,
        to: i64,
        modules: std::collections::BTreeMap<String, String>,
    },
    /// A code workflow's code made a call (`position`: 1, 2, ... within
    /// the run; its id in `submit-*` and `await-*`). Step-like calls
    /// (`step`, `child`, `sleep`, `wait`) are steps named `name` from here on.
    #[serde(rename = "workflow.called")]
    WorkflowCalled {
        position: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        call: crate::run::code::CallRecord,
    },
    /// A code workflow's code logged a line.
    #[serde(rename = "workflow.log")]
    WorkflowLog { level: Level, message: String },
    /// A code workflow's code returned: what the instance that ran it to
    /// the end consumed (replays included, which cost the same each time).
    #[serde(rename = "workflow.returned")]
    WorkflowReturned { fuel_consumed: u64, peak_memory: u64 },
    #[serde(rename = "run.canceling")]
    RunCanceling { reason: String },
    #[serde(rename = "run.completed")]
    RunCompleted { output: Value },
    #[serde(rename = "run.failed")]
    RunFailed { error: String },
    #[serde(rename = "run.canceled")]
    RunCanceled { reason: String },
}

impl EventKind {
    /// Whether this event ends its run (completed, failed or canceled).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            EventKind::RunCompleted { .. } | EventKind::RunFailed { .. } | EventKind::RunCanceled { .. }
        )
    }

    /// The attempt this event records the end of, if any: its fuel is the
    /// run's (retried, succeeded or failed).
    pub fn attempt_record(&self) -> Option<&AttemptRecord> {
        match self {
            EventKind::StepRetrying { record, .. } => Some(record),
            EventKind::ItemSucceeded { record, .. }
            | EventKind::StepSucceeded { record, .. }
            | EventKind::StepFailed { record, .. } => record.as_ref(),
            _ => None,
        }
    }

    /// Fuel this event records as consumed: an attempt's, or a code
    /// workflow's own.
    pub fn fuel_consumed(&self) -> u64 {
        match self {
            EventKind::WorkflowReturned { fuel_consumed, .. } => *fuel_consumed,
            other => other.attempt_record().map_or(0, |r| r.fuel_consumed),
        }
    }

    /// The `type` string (`step.started`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunQueued { .. } => "run.queued",
            EventKind::RunStarted => "run.started",
            EventKind::StepExpanded { .. } => "step.expanded",
            EventKind::StepStarted { .. } => "step.started",
            EventKind::StepCached { .. } => "step.cached",
            EventKind::StepThrottled { .. } => "step.throttled",
            EventKind::StepLog { .. } => "step.log",
            EventKind::StepChildStarted { .. } => "step.child_started",
            EventKind::StepWaiting { .. } => "step.waiting",
            EventKind::StepRetrying { .. } => "step.retrying",
            EventKind::ItemSucceeded { .. } => "step.item_succeeded",
            EventKind::StepSucceeded { .. } => "step.succeeded",
            EventKind::StepFailed { .. } => "step.failed",
            EventKind::StepSkipped { .. } => "step.skipped",
            EventKind::StepCanceled { .. } => "step.canceled",
            EventKind::RunPaused { .. } => "run.paused",
            EventKind::RunResumed => "run.resumed",
            EventKind::RunUpgraded { .. } => "run.upgraded",
            EventKind::WorkflowCalled { .. } => "workflow.called",
            EventKind::WorkflowLog { .. } => "workflow.log",
            EventKind::WorkflowReturned { .. } => "workflow.returned",
            EventKind::RunCanceling { .. } => "run.canceling",
            EventKind::RunCompleted { .. } => "run.completed",
            EventKind::RunFailed { .. } => "run.failed",
            EventKind::RunCanceled { .. } => "run.canceled",
        }
    }
}

/// Where a run came from besides a client's start, recorded in its
/// `run.queued` event: a re-run (with the outputs it reuses), a trigger, a
/// parent run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The run this one re-runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    /// Steps of `rerun_of` whose recorded outputs this run takes as its
    /// own, by step id: they do not run again.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub reused: serde_json::Map<String, Value>,
    /// What started the run: `{"schedule": ..., "tick": ...}` or `{"event": id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Value>,
    /// A sub-workflow's parent run and the step that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step_id: Option<String>,
    /// The workflows above this run, the root first (sub-workflows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<String>,
    /// The version of each sub-workflow this run's steps start, pinned
    /// when it was queued.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub workflows: std::collections::BTreeMap<String, i64>,
    /// The fuel all of the run's attempts may consume together: the
    /// smaller of the definition's `budget.fuel` and the start request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_fuel: Option<u64>,
    /// A code run's re-run: the calls of the run it re-runs that its code
    /// replays before going on live (their steps' outputs are in `reused`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<crate::run::code::RecordedCall>,
    /// The name of the API token that started the run (or its root run);
    /// its usage is recorded under that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The W3C `traceparent` the run's span is a child of: the start
    /// request's, the webhook delivery's, the event's that started it, or
    /// its parent run's step span (`telemetry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
