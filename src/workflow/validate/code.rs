//! Code workflows: a definition with `code:` instead of `steps:`, and the
//! calls its code makes, each compiled into a [`Step`] the executor runs
//! like a YAML one (limits, retries, cache, grants, throttle), against the
//! definition's `defaults`.

use std::collections::HashMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::grants::Compiled;
use super::step::{check_topic, compile_step, Context};
use super::{Action, Errors, RetryPolicy, Step};
use crate::limits::{Caps, Limits, WorkflowLimits};
use crate::workflow::definition::{InputDef, OnFailure, StepDef, WorkflowLimitsDef};
use crate::workflow::template::TemplateValue;
use crate::workflow::ValidationError;

/// A code workflow's module and what its calls are compiled against.
#[derive(Debug)]
pub struct Code {
    /// The workflow module's reference as written (`order-flow:v1`).
    pub module: String,
    pub limits: WorkflowLimits,
    defaults: Defaults,
}

#[derive(Debug)]
struct Defaults {
    limits: Limits,
    retry: RetryPolicy,
    retry_by_default: bool,
    grants: Compiled,
    caps: Caps,
    secrets: Option<Vec<String>>,
    inputs: IndexMap<String, InputDef>,
}

/// What a call asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum CallAction {
    Module(String),
    Workflow(String),
    Sleep(Duration),
    Wait { topic: String, timeout: Option<Duration> },
}

/// Why a call cannot be made: `invalid_call` or `capability_denied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRefused {
    pub kind: &'static str,
    pub message: String,
}

/// The fields of a step's `options` JSON, as the YAML step's.
const OPTION_FIELDS: &[&str] = &[
    "retry",
    "limits",
    "timeout",
    "cache",
    "grants",
    "env",
    "throttle",
    "idempotency_key",
];

/// The most characters of a call name.
pub const MAX_CALL_NAME: usize = 128;

/// A call name: 1 to 128 letters, digits, `_`, `-` or `.` (`check-3`).
pub fn check_call_name(name: &str) -> Result<(), String> {
    let valid = (1..=MAX_CALL_NAME).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid call name {name:?}: use 1 to {MAX_CALL_NAME} letters, digits, '_', '-' or '.'"
        ))
    }
}

/// Compiles `code:` and `workflow_limits:` with the definition's defaults.
pub(super) struct CodeParts<'a> {
    pub module: String,
    pub limits: Option<&'a WorkflowLimitsDef>,
    pub default_limits: &'a Limits,
    pub default_retry: &'a RetryPolicy,
    pub retry_by_default: bool,
    pub default_grants: &'a Compiled,
    pub caps: &'a Caps,
    pub secrets: Option<&'a [String]>,
    pub inputs: &'a IndexMap<String, InputDef>,
}

pub(super) fn compile_code(parts: CodeParts, errors: &mut Errors) -> Code {
    let mut limits = WorkflowLimits::default();
    if let Some(def) = parts.limits {
        if let Some(fuel) = def.fuel {
            if fuel == 0 || fuel > parts.caps.fuel {
                errors.add(
                    "workflow_limits.fuel",
                    format!("must be between 1 and the cap of {}", parts.caps.fuel),
                );
            }
            limits.fuel = fuel;
        }
        if let Some(memory) = def.memory {
            if memory == 0 || memory > parts.caps.memory {
                errors.add(
                    "workflow_limits.memory",
                    format!(
                        "must be between 1 byte and the cap of {}",
                        crate::units::format_size(parts.caps.memory)
                    ),
                );
            }
            limits.memory = memory;
        }
        if let Some(calls) = def.calls {
            if calls == 0 {
                errors.add("workflow_limits.calls", "must be at least 1");
            }
            limits.calls = calls;
        }
    }
    Code {
        module: parts.module,
        limits,
        defaults: Defaults {
            limits: parts.default_limits.clone(),
            retry: parts.default_retry.clone(),
            retry_by_default: parts.retry_by_default,
            grants: parts.default_grants.clone(),
            caps: parts.caps.clone(),
            secrets: parts.secrets.map(<[String]>::to_vec),
            inputs: parts.inputs.clone(),
        },
    }
}

impl Code {
    /// The step a call runs: `options` (a JSON object, `{}` for none) holds
    /// the YAML step fields that apply to calls; the input is taken as it is
    /// (never a template). A step's grants must be within `defaults.grants`.
    pub fn compile_call(
        &self,
        name: &str,
        action: CallAction,
        input: Value,
        options: &Value,
    ) -> Result<Step, CallRefused> {
        let options = call_options(&action, options)?;
        let (def, idempotency_key) = self.call_definition(&action, options)?;
        let def: StepDef = serde_path_to_error::deserialize(Value::Object(def))
            .map_err(|e| invalid(format!("options.{}: {}", e.path(), e.inner())))?;
        let index: HashMap<String, usize> = [("call".to_string(), 0)].into();
        let context = Context {
            index: &index,
            inputs: &self.defaults.inputs,
            default_limits: &self.defaults.limits,
            default_retry: &self.defaults.retry,
            retry_by_default: self.defaults.retry_by_default,
            caps: &self.defaults.caps,
            catalog: None,
            secrets: self.defaults.secrets.as_deref(),
            default_grants: &self.defaults.grants,
        };
        let mut errors = Errors(Vec::new());
        let mut step = compile_step("steps.call".into(), def, context, &mut errors);
        if !errors.0.is_empty() {
            let denied = errors.0.iter().any(|e| e.location.contains(".grants"));
            let message = located(&errors.0);
            return Err(CallRefused {
                kind: if denied { "capability_denied" } else { "invalid_call" },
                message,
            });
        }
        if let Some(message) = self.beyond_defaults(&step) {
            return Err(CallRefused {
                kind: "capability_denied",
                message,
            });
        }
        if let (Action::Wait { topic: t, .. }, CallAction::Wait { topic, .. }) = (&mut step.action, &action) {
            *t = TemplateValue::Literal(Value::String(topic.clone()));
        }
        step.id = name.to_string();
        step.input = TemplateValue::Literal(input);
        step.on_failure = OnFailure::Continue;
        step.idempotency_key = idempotency_key;
        Ok(step)
    }

    /// The YAML step a call stands for, as JSON, with its idempotency key
    /// when the options give one.
    fn call_definition(
        &self,
        action: &CallAction,
        options: Map<String, Value>,
    ) -> Result<(Map<String, Value>, Option<String>), CallRefused> {
        let mut def = Map::new();
        def.insert("id".into(), "call".into());
        let mut idempotency_key = None;
        match action {
            CallAction::Module(reference) => {
                def.insert("module".into(), Value::String(reference.clone()));
                idempotency_key = self.module_options(&options, &mut def)?;
            }
            CallAction::Workflow(workflow) => {
                def.insert("workflow".into(), Value::String(workflow.clone()));
                if let Some(version) = options.get("version") {
                    def.insert("version".into(), version.clone());
                }
            }
            CallAction::Sleep(duration) => {
                def.insert("sleep".into(), format!("{}ms", duration.as_millis()).into());
            }
            CallAction::Wait { topic, timeout } => {
                check_topic(topic).map_err(|m| invalid(format!("topic: {m}")))?;
                if *timeout == Some(Duration::ZERO) {
                    return Err(invalid("timeout must be longer than zero".into()));
                }
                let mut wait = Map::new();
                // The topic is set below as it is, never as a template.
                wait.insert("event".into(), "topic".into());
                if let Some(timeout) = timeout {
                    wait.insert("timeout".into(), format!("{}ms", timeout.as_millis()).into());
                }
                def.insert("wait".into(), Value::Object(wait));
            }
        }
        Ok((def, idempotency_key))
    }

    /// A module call's options as step fields: `grants` and `env` (within
    /// the defaults) and the rest as they are; answers its idempotency key.
    fn module_options(
        &self,
        options: &Map<String, Value>,
        def: &mut Map<String, Value>,
    ) -> Result<Option<String>, CallRefused> {
        let mut idempotency_key = None;
        for (key, value) in options {
            match key.as_str() {
                "env" | "grants" => {}
                "idempotency_key" => match value.as_str() {
                    Some(key) if !key.is_empty() && key.chars().count() <= 200 => {
                        idempotency_key = Some(key.to_string())
                    }
                    _ => {
                        return Err(invalid(
                            "options.idempotency_key: must be a string of 1 to 200 characters".into(),
                        ))
                    }
                },
                _ => {
                    def.insert(key.clone(), value.clone());
                }
            }
        }
        if options.contains_key("grants") || options.contains_key("env") {
            let mut grants = match options.get("grants") {
                Some(Value::Object(grants)) => grants.clone(),
                Some(_) => return Err(invalid("options.grants: must be an object".into())),
                None => self.default_grants_json(),
            };
            if let Some(env) = options.get("env") {
                grants.insert("env".into(), env.clone());
            }
            def.insert("grants".into(), Value::Object(grants));
        }
        Ok(idempotency_key)
    }

    fn default_grants_json(&self) -> Map<String, Value> {
        let grants = &self.defaults.grants.grants;
        let mut map = Map::new();
        if !grants.http.is_empty() {
            map.insert(
                "http".into(),
                grants.http.iter().map(|h| Value::String(h.to_string())).collect(),
            );
        }
        if grants.scratch.is_some() || !grants.read.is_empty() {
            let mut files = Map::new();
            if let Some(scratch) = grants.scratch {
                files.insert("scratch".into(), scratch.into());
            }
            files.insert("read".into(), grants.read.clone().into());
            map.insert("files".into(), Value::Object(files));
        }
        map
    }

    /// What a step is granted beyond the definition's `defaults.grants`.
    fn beyond_defaults(&self, step: &Step) -> Option<String> {
        let allowed = &self.defaults.grants.grants;
        let granted = &step.grants;
        if let Some(host) = granted.http.iter().find(|h| !allowed.http.contains(h)) {
            return Some(format!(
                "grants.http: {host} is not in the workflow's defaults.grants (a call may be granted only what they grant)"
            ));
        }
        if let Some(dir) = granted.read.iter().find(|d| !allowed.read.contains(d)) {
            return Some(format!(
                "grants.files.read: {dir} is not in the workflow's defaults.grants"
            ));
        }
        match (granted.scratch, allowed.scratch) {
            (Some(asked), Some(cap)) if asked > cap => Some(format!(
                "grants.files.scratch: {} is above the workflow's defaults.grants ({})",
                crate::units::format_size(asked),
                crate::units::format_size(cap)
            )),
            (Some(_), None) => Some("grants.files.scratch: the workflow's defaults.grants grant no scratch".into()),
            _ => None,
        }
    }
}

/// Errors found compiling a call, located at its options.
fn located(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(|e| {
            let location = e.location.strip_prefix("steps.call").unwrap_or(&e.location);
            let location = location.strip_prefix('.').unwrap_or(location);
            if location.is_empty() {
                e.message.clone()
            } else {
                format!("options.{location}: {}", e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A call refused as invalid, saying why.
fn invalid(message: String) -> CallRefused {
    CallRefused {
        kind: "invalid_call",
        message,
    }
}

/// A call's options: a JSON object (or none) holding only the fields its
/// kind takes.
fn call_options(action: &CallAction, options: &Value) -> Result<Map<String, Value>, CallRefused> {
    let options = match options {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(invalid(format!(
                "options must be a JSON object, got {}",
                crate::workflow::template::kind_of(other)
            )))
        }
    };
    let allowed: &[&str] = match action {
        CallAction::Module(_) => OPTION_FIELDS,
        CallAction::Workflow(_) => &["version"],
        _ => &[],
    };
    if let Some(unknown) = options.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "options.{unknown}: unknown option (calls of this kind take: {})",
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    Ok(options)
}
