//! The typed result of one attempt: the output JSON or a named failure, plus
//! what the attempt cost and what it logged.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Severity of a log line, as the guest's `log` call gave it (stdout lines of
/// a step are `info`, stderr lines `warn`; a command's stderr lines `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// Why an attempt did not produce an output. Each variant is a distinct,
/// stable `kind` in JSON and in the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// The guest returned an error (a command: exited non-zero).
    #[error("guest error: {message}")]
    GuestError { message: String, retryable: bool },
    /// The fuel limit ran out.
    #[error("fuel exhausted after {limit} units")]
    FuelExhausted { limit: u64 },
    /// Linear memory or a table would have grown past its limit.
    #[error("{message}")]
    MemoryLimit { message: String },
    /// The guest's call stack overflowed the engine's wasm stack limit.
    #[error("stack overflow: the wasm stack limit is {limit} bytes")]
    StackOverflow {
        /// Older records have no limit: 0.
        #[serde(default)]
        limit: u64,
    },
    /// The attempt ran past its wall-clock limit.
    #[error("timed out after {}", crate::units::format_duration(*limit))]
    Timeout {
        #[serde(with = "humantime_serde_compat")]
        limit: Duration,
    },
    /// The output was larger than the output limit.
    #[error("output larger than the limit of {limit} bytes")]
    OutputTooLarge { limit: u64 },
    /// Logs went past the log byte or line limit.
    #[error("{message}")]
    LogsTooLarge { message: String },
    /// One host call asked the host to copy more data than the guest's
    /// memory limit: lists whose elements alias the same memory, made to
    /// have the host allocate more than the guest itself may hold.
    #[error("a host call passed more than the limit of {limit} bytes")]
    HostCallTooLarge { limit: u64 },
    /// Any other trap: `unreachable`, a panic, an out-of-bounds access.
    #[error("trap: {message}")]
    Trap { message: String },
    /// The output was not JSON, or not UTF-8.
    #[error("invalid output: {message}")]
    InvalidOutput { message: String },
    /// The module could not be instantiated for this attempt.
    #[error("instantiation failed: {message}")]
    InstantiationFailed { message: String },
    /// The module needs what the step is not granted (it imports
    /// `wasi:http` with no `grants.http`, say). Not retried.
    #[error("capability denied: {message}")]
    CapabilityDenied { message: String },
    /// The attempt wrote more to `/scratch` than `grants.files.scratch`.
    #[error("scratch directory full: the limit is {limit} bytes")]
    ScratchFull { limit: u64 },
}

impl Failure {
    /// The stable name of this failure, as in JSON (`fuel_exhausted`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::GuestError { .. } => "guest_error",
            Failure::FuelExhausted { .. } => "fuel_exhausted",
            Failure::MemoryLimit { .. } => "memory_limit",
            Failure::StackOverflow { .. } => "stack_overflow",
            Failure::Timeout { .. } => "timeout",
            Failure::OutputTooLarge { .. } => "output_too_large",
            Failure::LogsTooLarge { .. } => "logs_too_large",
            Failure::HostCallTooLarge { .. } => "host_call_too_large",
            Failure::Trap { .. } => "trap",
            Failure::InvalidOutput { .. } => "invalid_output",
            Failure::InstantiationFailed { .. } => "instantiation_failed",
            Failure::CapabilityDenied { .. } => "capability_denied",
            Failure::ScratchFull { .. } => "scratch_full",
        }
    }

    /// Whether this failure is a limit the guest crossed (as opposed to an
    /// error, a trap or a bad output).
    pub fn names_a_limit(&self) -> bool {
        matches!(
            self,
            Failure::FuelExhausted { .. }
                | Failure::MemoryLimit { .. }
                | Failure::StackOverflow { .. }
                | Failure::Timeout { .. }
                | Failure::OutputTooLarge { .. }
                | Failure::LogsTooLarge { .. }
                | Failure::HostCallTooLarge { .. }
                | Failure::ScratchFull { .. }
        )
    }

    /// Whether trying again could help. Exhausting fuel or memory, an
    /// oversized host call, or a guest error marked non-retryable, would
    /// happen again on the same input.
    pub fn retryable(&self) -> bool {
        match self {
            Failure::GuestError { retryable, .. } => *retryable,
            Failure::FuelExhausted { .. }
            | Failure::MemoryLimit { .. }
            | Failure::HostCallTooLarge { .. }
            | Failure::CapabilityDenied { .. }
            | Failure::ScratchFull { .. } => false,
            _ => true,
        }
    }
}

/// Durations inside failures are written as `30s`, `250ms`.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// What one attempt produced and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The output JSON, or why there is none.
    #[serde(flatten)]
    pub result: AttemptResult,
    /// Wall-clock time from store creation to the end of the call.
    #[serde(rename = "duration_us", with = "micros")]
    pub duration: Duration,
    /// Time spent instantiating the module (part of `duration`).
    #[serde(rename = "instantiate_us", with = "micros")]
    pub instantiate: Duration,
    /// Fuel units the attempt consumed.
    pub fuel_consumed: u64,
    /// Largest total linear memory the attempt held, in bytes.
    pub peak_memory: u64,
    /// Captured log lines, in order per source.
    pub logs: Vec<LogLine>,
    /// What the attempt reached under its grants; `None` without grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// What one attempt used of its grants: every HTTP request it made (or
/// tried), every file it opened under a directory grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Audit {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpUse>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileUse>,
}

/// One outbound request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HttpUse {
    pub method: String,
    /// `host:port` as requested.
    pub host: String,
    /// The response status; absent when there was no response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request plus response body bytes.
    pub bytes: u64,
    /// Why the request was refused or failed, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One file or directory opened under a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileUse {
    /// The grant: a read-only directory's name, or `scratch`.
    pub grant: String,
    /// The path as the guest sees it (`/data/config.json`).
    pub path: String,
    /// Whether it was opened for writing (or created).
    pub write: bool,
}

/// The output, or the failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AttemptResult {
    Succeeded { output: serde_json::Value },
    Failed { error: Failure },
}

impl Attempt {
    /// An attempt refused before any guest code ran.
    pub fn refused(error: Failure) -> Self {
        Attempt {
            result: AttemptResult::Failed { error },
            duration: Duration::ZERO,
            instantiate: Duration::ZERO,
            fuel_consumed: 0,
            peak_memory: 0,
            logs: Vec::new(),
            audit: None,
        }
    }

    pub fn output(&self) -> Option<&serde_json::Value> {
        match &self.result {
            AttemptResult::Succeeded { output } => Some(output),
            AttemptResult::Failed { .. } => None,
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        match &self.result {
            AttemptResult::Succeeded { .. } => None,
            AttemptResult::Failed { error } => Some(error),
        }
    }
}

/// Durations in the attempt record are whole microseconds (`duration_us`).
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
