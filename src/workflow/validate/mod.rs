//! Validation: a parsed [`WorkflowDef`](super::definition::WorkflowDef)
//! becomes a [`Workflow`] whose every reference resolves, or a list of
//! every error with its location. The compiled types here; the definition
//! as a whole in `document`, one step in `step`, templates and the paths
//! they read in `paths`, limits, retries and cycles in `checks`.

mod checks;
mod code;
mod document;
mod grants;
mod hooks;
mod paths;
mod step;
mod throttle;
mod triggers;

pub use code::{check_call_name, CallAction, CallRefused, Code};
pub use document::validate;
pub use hooks::{check_hook_name, Hook, Signature};
pub use step::{check_topic, MAX_TOPIC_CHARS};
pub use throttle::{Rate, Throttle, MAX_RATE_PER, MAX_THROTTLE_LIMIT};
pub use triggers::{RunTrigger, Schedule, MAX_CATCH_UP};

use std::collections::HashMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use super::definition::{InputDef, OnFailure, RetryDef, Trigger};
use super::template::{Template, TemplateValue};
use super::ValidationError;
use crate::limits::Limits;

/// A validated workflow: the per-workflow-version lifetime.
#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub inputs: IndexMap<String, InputDef>,
    /// Attempts of one run running at once.
    pub concurrency: u32,
    pub timeout: Option<Duration>,
    pub steps: Vec<Step>,
    pub output: Option<TemplateValue>,
    /// What starts runs besides a client, in definition order.
    pub triggers: Vec<RunTrigger>,
    /// `secrets:`, when listed.
    pub secrets: Option<Vec<String>>,
    /// `budget.fuel`: the fuel all of a run's attempts may consume together.
    pub budget_fuel: Option<u64>,
    /// `throttle:` over the attempts of every module step, across runs.
    pub throttle: Option<Throttle>,
    /// A code workflow's module and limits (its `steps` are its calls,
    /// added as the code makes them).
    pub code: Option<Code>,
    /// The stored version (0 for a definition not stored: `sandstep run`).
    pub version: i64,
    /// `mcp:`: offered to AI agents as a tool at `/mcp`.
    pub mcp: Option<McpTool>,
    index: HashMap<String, usize>,
}

/// A workflow offered as an MCP tool (named as the workflow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTool {
    /// `mcp.description`, else the workflow's description.
    pub description: Option<String>,
}

/// The prefix of Sandstep's own MCP tools, which no workflow tool may take.
pub const MCP_BUILTIN_PREFIX: &str = "sandstep_";

/// Longest `mcp.description`, in characters.
pub const MAX_MCP_DESCRIPTION: usize = 4096;

impl Workflow {
    /// The position of a step by id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The workflow a code run of this one runs: the same settings, no
    /// steps until the code makes calls ([`Workflow::push_call`]). The
    /// workflow-wide `throttle` stays with the definition.
    pub fn for_calls(&self) -> Workflow {
        Workflow {
            name: self.name.clone(),
            description: None,
            inputs: self.inputs.clone(),
            concurrency: self.concurrency,
            timeout: self.timeout,
            steps: Vec::new(),
            output: None,
            triggers: Vec::new(),
            secrets: self.secrets.clone(),
            budget_fuel: self.budget_fuel,
            throttle: None,
            code: None,
            version: self.version,
            mcp: None,
            index: HashMap::new(),
        }
    }

    /// Adds the step of a code run's call; its position.
    pub fn push_call(&mut self, step: Step) -> usize {
        let index = self.steps.len();
        self.index.insert(step.id.clone(), index);
        self.steps.push(step);
        index
    }

    /// Whether the workflow or any step of it has a `throttle:`.
    pub fn throttles(&self) -> bool {
        self.throttle.is_some() || self.steps.iter().any(|s| s.throttle.is_some())
    }

    /// The steps in `from` and every step that depends on one of them,
    /// directly or not, by position.
    pub fn downstream(&self, from: impl IntoIterator<Item = usize>) -> Vec<bool> {
        let mut marked = vec![false; self.steps.len()];
        for index in from {
            marked[index] = true;
        }
        // Dependencies come before dependents only in a valid order, so
        // repeat until nothing changes (a few passes for real workflows).
        loop {
            let mut changed = false;
            for (index, step) in self.steps.iter().enumerate() {
                if !marked[index] && step.deps.iter().any(|&d| marked[d]) {
                    marked[index] = true;
                    changed = true;
                }
            }
            if !changed {
                return marked;
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub input: TemplateValue,
    /// Every dependency: `needs` plus each step a template reads, by index.
    pub deps: Vec<usize>,
    /// Whether a template of the step reads the run's `inputs`.
    pub reads_inputs: bool,
    pub when: Option<Template>,
    pub for_each: Option<ForEach>,
    /// Items of this step running at once (for_each).
    pub concurrency: Option<u32>,
    pub retry: RetryPolicy,
    pub on_failure: OnFailure,
    pub trigger: Trigger,
    pub limits: Limits,
    /// What the step may reach (module steps only).
    pub grants: crate::grants::Grants,
    /// Environment variables, rendered per attempt like the input.
    pub env: std::sync::Arc<Vec<(String, TemplateValue)>>,
    /// `cache:`: reuse recorded outputs, kept this long (`None`: until cleared).
    pub cache: Option<CachePolicy>,
    /// `throttle:` over this step's attempts, across runs (module steps).
    pub throttle: Option<Throttle>,
    /// The idempotency key its attempts get instead of `RUN/STEP` (calls
    /// of code workflows that name one).
    pub idempotency_key: Option<String>,
}

impl Step {
    /// Whether an attempt of the step renders nothing: its input, args,
    /// env and throttle key hold no template, and it has no `when` or
    /// `for_each` (a code workflow's calls, literal YAML steps).
    pub fn renders_literally(&self) -> bool {
        let args = match &self.action {
            Action::Module { args, .. } => args.iter().all(TemplateValue::is_literal),
            Action::Workflow { .. } => true,
            Action::Sleep(_) | Action::Wait { .. } => return false,
        };
        args && self.when.is_none()
            && self.for_each.is_none()
            && self.throttle.is_none()
            && self.input.is_literal()
            && self.env.iter().all(|(_, value)| value.is_literal())
    }
}

/// A step's validated `cache:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub ttl: Option<Duration>,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Run a module; `args` go to a command.
    Module {
        reference: String,
        args: Vec<TemplateValue>,
    },
    /// Wait, then succeed with a null output.
    Sleep(Duration),
    /// Run another workflow as a child run (one per for_each item); its
    /// output is the step's. `version: None`: pinned when the run starts.
    Workflow { name: String, version: Option<i64> },
    /// Wait for a posted event whose topic is `topic` (rendered when the
    /// step starts) and for which `matches` is true; its data is the output.
    Wait {
        topic: TemplateValue,
        timeout: Option<Duration>,
        matches: Option<Template>,
    },
}

#[derive(Debug, Clone)]
pub enum ForEach {
    Template(Template),
    Items(Vec<Value>),
}

/// When and how often a failed attempt is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 1 means no retry.
    pub max_attempts: u32,
    pub initial_interval: Duration,
    /// Each delay is the previous one times this.
    pub backoff: f64,
    pub max_interval: Duration,
    /// Fraction of each delay randomised away (0.0 to 1.0).
    pub jitter: f64,
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_interval: Duration::from_secs(1),
        backoff: 2.0,
        max_interval: Duration::from_secs(30),
        jitter: 0.1,
    };

    /// The policy `on_failure: retry` means when the workflow sets none.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::NONE
    };

    /// The delay before attempt `attempt + 1`, after attempt `attempt` failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial_interval.as_secs_f64() * self.backoff.powi(attempt.saturating_sub(1) as i32);
        let capped = base.min(self.max_interval.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * fastrand::f64());
        Duration::from_secs_f64(jittered.max(0.0))
    }

    fn merged(&self, def: &RetryDef) -> RetryPolicy {
        RetryPolicy {
            max_attempts: def.max_attempts.unwrap_or(self.max_attempts),
            initial_interval: def.initial_interval.unwrap_or(self.initial_interval),
            backoff: def.backoff.unwrap_or(self.backoff),
            max_interval: def.max_interval.unwrap_or(self.max_interval),
            jitter: def.jitter.unwrap_or(self.jitter),
        }
    }
}

/// Tells whether a module reference exists (a module store, a server).
pub trait ModuleCatalog {
    /// `Err` with the reason when `reference` cannot be used.
    fn check(&self, reference: &str) -> Result<(), String>;

    /// `Err` with the reason when a sub-workflow cannot be used. Catalogs
    /// that know no workflows accept every one.
    fn check_workflow(&self, name: &str, version: Option<i64>) -> Result<(), String> {
        let _ = (name, version);
        Ok(())
    }

    /// `Err` with the reason when `reference` cannot be a workflow's
    /// `code:` (missing, or not workflow code). Catalogs that know no
    /// module kinds only check that it exists.
    fn check_code(&self, reference: &str) -> Result<(), String> {
        self.check(reference)
    }
}

/// Collects errors with their locations.
struct Errors(Vec<ValidationError>);

impl Errors {
    fn add(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            location: location.into(),
            message: message.into(),
        });
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
