//! The workflow definition as written (YAML or JSON), before validation.
//! Unknown fields are rejected everywhere.

use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

mod limits;

pub use limits::{
    BudgetDef, ConcurrencyDef, KeyedConcurrencyDef, KeyedRateDef, RateDef, ThrottleDef, WorkflowLimitsDef,
};

/// A whole definition. `steps` stay raw JSON here so each step is parsed on
/// its own and every broken step is reported, not just the first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: IndexMap<String, InputDef>,
    #[serde(default)]
    pub defaults: DefaultsDef,
    /// Attempts of this run running at once (default: the server's cap),
    /// or `{ key, limit }`: a keyed limit across runs (as `throttle:`).
    #[serde(default)]
    pub concurrency: Option<ConcurrencyDef>,
    /// `{ key, limit, per }`: a keyed rate limit across runs (as `throttle:`).
    #[serde(default)]
    pub rate: Option<KeyedRateDef>,
    /// Wall-clock limit for the whole run.
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub steps: Vec<Value>,
    /// A code workflow: the workflow module whose code runs instead of `steps`.
    #[serde(default)]
    pub code: Option<String>,
    /// Limits on a code workflow's own code.
    #[serde(default)]
    pub workflow_limits: Option<WorkflowLimitsDef>,
    #[serde(default)]
    pub output: Option<Value>,
    /// What starts runs besides a client: schedules and posted events.
    #[serde(default)]
    pub triggers: Vec<TriggerDef>,
    /// The secrets the workflow uses; when given, a template naming any
    /// other is an error.
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    /// What all of a run's attempts together may consume.
    #[serde(default)]
    pub budget: Option<BudgetDef>,
    /// Keyed limits on the attempts of every module step of the workflow,
    /// across its runs.
    #[serde(default)]
    pub throttle: Option<ThrottleDef>,
    /// `mcp: true` or `mcp: { description }`: offered to AI agents as a
    /// tool at `/mcp`.
    #[serde(default)]
    pub mcp: Option<McpDef>,
}

/// `mcp:`: whether the workflow is an MCP tool, and the tool's own
/// description (else the workflow's).
#[derive(Debug, Clone, Default)]
pub struct McpDef {
    pub offered: bool,
    pub description: Option<String>,
}

impl<'de> Deserialize<'de> for McpDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tool {
            #[serde(default)]
            description: Option<String>,
        }
        match Value::deserialize(d)? {
            Value::Bool(offered) => Ok(McpDef {
                offered,
                description: None,
            }),
            Value::Object(map) => serde_json::from_value::<Tool>(Value::Object(map))
                .map(|tool| McpDef {
                    offered: true,
                    description: tool.description,
                })
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected true, false or {{ description }}, got {}",
                crate::workflow::template::kind_of(&other)
            ))),
        }
    }
}

/// `grants:` under `defaults` or on a step (a step's replace the defaults').
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsDef {
    /// Hosts the step may call: `api.example.com`, `*.example.org:8443`.
    #[serde(default)]
    pub http: Vec<String>,
    #[serde(default)]
    pub files: Option<FilesDef>,
    /// Environment variables (templates; `{{ secrets.X }}` allowed).
    #[serde(default)]
    pub env: IndexMap<String, Value>,
}

/// `files: { scratch: 64MiB, read: [NAME, ...] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesDef {
    /// A fresh directory at `/scratch` per attempt, capped at this size.
    #[serde(default, deserialize_with = "size_opt")]
    pub scratch: Option<u64>,
    /// Read-only directories the server exposes (`--allow-read NAME=DIR`).
    #[serde(default)]
    pub read: Vec<String>,
}

/// One entry of `triggers:`: `schedule:` (with `timezone`, `catch_up`),
/// `on_event:`, or `webhook:` (with `secret`, `signature`, `header`,
/// `tolerance`, `headers`, `event`), each with an optional `input`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// A cron expression: 5 fields, or 6 with seconds first.
    #[serde(default)]
    pub schedule: Option<String>,
    /// An IANA time zone for `schedule` (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Ticks missed while the server was down: `latest` (default), `all`
    /// (at most 100) or `none`.
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
    /// A topic: every event posted with it starts a run.
    #[serde(default)]
    pub on_event: Option<String>,
    /// The run's input: for a schedule, JSON; for `on_event`, a template
    /// over `event` (default: the event's data); for a webhook, a template
    /// over `request.body` and `request.headers` (default: the body).
    #[serde(default)]
    pub input: Option<Value>,
    /// A hook name: `POST /hooks/NAME` starts a run (or posts `event`).
    #[serde(default)]
    pub webhook: Option<String>,
    /// The secret (from the secrets store) a webhook's signature is
    /// computed with.
    #[serde(default)]
    pub secret: Option<String>,
    /// `github`, `stripe`, `hmac-sha256` or `none`.
    #[serde(default)]
    pub signature: Option<String>,
    /// `hmac-sha256`: the header carrying the signature (hex or base64).
    #[serde(default)]
    pub header: Option<String>,
    /// `stripe`: how old a signed timestamp may be (default 5m).
    #[serde(default, deserialize_with = "duration_opt")]
    pub tolerance: Option<Duration>,
    /// The request headers a webhook's `input` may read.
    #[serde(default)]
    pub headers: Vec<String>,
    /// A topic: the webhook posts its body as an event of this topic
    /// instead of starting a run.
    #[serde(default)]
    pub event: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// One run for the most recent missed tick.
    #[default]
    Latest,
    /// One run per missed tick, the most recent 100 at most.
    All,
    /// No run for missed ticks.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    Any,
}

/// One declared input: its type, whether a run must give it, its default.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputDef {
    #[serde(rename = "type", default = "any")]
    pub ty: InputType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn any() -> InputType {
    InputType::Any
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsDef {
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub limits: Option<LimitsDef>,
    #[serde(default)]
    pub retry: Option<RetryDef>,
    #[serde(default)]
    pub grants: Option<GrantsDef>,
}

/// Per-step limits; each field is optional and falls back to the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDef {
    #[serde(default)]
    pub fuel: Option<u64>,
    #[serde(default, deserialize_with = "size_opt")]
    pub memory: Option<u64>,
    #[serde(default, deserialize_with = "size_opt")]
    pub output: Option<u64>,
    #[serde(default, deserialize_with = "size_opt")]
    pub logs: Option<u64>,
    #[serde(default)]
    pub http_requests: Option<u64>,
    #[serde(default, deserialize_with = "size_opt")]
    pub http_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub initial_interval: Option<Duration>,
    #[serde(default)]
    pub backoff: Option<f64>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub max_interval: Option<Duration>,
    /// Fraction of each delay randomised away, 0.0 to 1.0.
    #[serde(default)]
    pub jitter: Option<f64>,
}

/// What happens when a step has failed for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run fails; running steps are canceled.
    #[default]
    Stop,
    /// The step fails, its dependents are skipped, the rest goes on.
    Continue,
    /// The default retry policy, then `stop`.
    Retry,
}

/// When a step runs relative to its dependencies' outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Only when every dependency succeeded (skipped otherwise).
    #[default]
    AllSucceeded,
    /// Once every dependency is done, whatever its outcome.
    AllDone,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub id: String,
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub for_each: Option<Value>,
    #[serde(default)]
    pub concurrency: Option<ConcurrencyDef>,
    /// `{ key, limit, per }`: a keyed rate limit on its attempts (as `throttle:`).
    #[serde(default)]
    pub rate: Option<KeyedRateDef>,
    #[serde(default)]
    pub retry: Option<RetryDef>,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub limits: Option<LimitsDef>,
    /// A step that only waits this long.
    #[serde(default, deserialize_with = "duration_opt")]
    pub sleep: Option<Duration>,
    /// A step that waits for a posted event.
    #[serde(default)]
    pub wait: Option<WaitDef>,
    /// A step that runs another workflow as a child run.
    #[serde(default)]
    pub workflow: Option<String>,
    /// The child workflow's version; default: the latest when the run starts.
    #[serde(default)]
    pub version: Option<i64>,
    /// What the step may reach; replaces `defaults.grants`.
    #[serde(default)]
    pub grants: Option<GrantsDef>,
    /// Reuse a recorded output for the same module, input, grants and limits.
    #[serde(default)]
    pub cache: Option<CacheDef>,
    /// Keyed limits on this step's attempts, across runs.
    #[serde(default)]
    pub throttle: Option<ThrottleDef>,
}

/// `cache: true`, or `cache: { ttl: 7d, unsafe_effects: true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CacheDef {
    On(bool),
    Policy(CachePolicyDef),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicyDef {
    /// How long an entry is reused; default: until cleared.
    #[serde(default, deserialize_with = "duration_opt")]
    pub ttl: Option<Duration>,
    /// Cache a step granted HTTP or files even so: its effects do not
    /// happen again on a hit.
    #[serde(default)]
    pub unsafe_effects: bool,
}

/// `wait: { event: <topic>, timeout: 24h, match: <expression> }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitDef {
    /// The topic to wait for; a template.
    pub event: String,
    /// How long to wait before the step fails with `wait_timeout`; without
    /// it, the step waits until an event comes or the run ends.
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    /// An expression over `event.topic`, `event.data` and what `when`
    /// sees: only an event for which it is true resumes the step.
    #[serde(default, rename = "match")]
    pub matches: Option<String>,
}

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => crate::units::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a duration such as \"30s\", got {}",
            crate::workflow::template::kind_of(&other)
        ))),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_opt(d)?.ok_or_else(|| serde::de::Error::custom("expected a duration such as \"1m\", got null"))
}

fn size_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("a size must be a whole number of bytes")),
        Some(Value::String(text)) => crate::units::parse_size(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a size such as \"64MiB\", got {}",
            crate::workflow::template::kind_of(&other)
        ))),
    }
}

/// Whether a definition is written in JSON (an object) rather than YAML.
pub fn is_json(source: &str) -> bool {
    source.trim_start().starts_with('{')
}

/// The top-level `name` of a definition, without validating the rest (for
/// clients that address the workflow by name).
pub fn peek_name(source: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let named: Named = if is_json(source) {
        serde_json::from_str(source).ok()?
    } else {
        serde_yaml_ng::from_str(source).ok()?
    };
    Some(named.name)
}
