//! Validation: a parsed [`WorkflowDef`] becomes a [`Workflow`] whose every
//! reference resolves, or a list of every error with its location. The
//! definition as a whole here; one step in `step`, templates and the paths
//! they read in `paths`, limits, retries and cycles in `checks`.

mod checks;
mod code;
mod grants;
mod paths;
mod step;
mod throttle;
mod triggers;

pub use code::{check_call_name, CallAction, CallRefused, Code};
pub use step::{check_topic, MAX_TOPIC_CHARS};
pub use throttle::{Rate, Throttle, MAX_RATE_PER, MAX_THROTTLE_LIMIT};
pub use triggers::{RunTrigger, Schedule, MAX_CATCH_UP};

use std::collections::HashMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use self::checks::{apply_limits, check_retry, find_cycles};
use self::paths::{check_paths, compile_value, Known, Situational};
use super::definition::{InputDef, LimitsDef, OnFailure, RetryDef, StepDef, Trigger, WorkflowDef};
use super::template::{Template, TemplateValue};
use super::ValidationError;
use crate::limits::{Caps, Limits};

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
    index: HashMap<String, usize>,
}

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

/// Validates a parsed definition against the engine's caps and, when given,
/// a module catalog.
pub fn validate(
    def: WorkflowDef,
    steps: Vec<(String, StepDef)>,
    mut errors: Vec<ValidationError>,
    caps: &Caps,
    catalog: Option<&dyn ModuleCatalog>,
) -> Result<Workflow, Vec<ValidationError>> {
    let mut errors = Errors(std::mem::take(&mut errors));
    if crate::modules::check_name(&def.name).is_err() {
        errors.add(
            "name",
            format!(
                "invalid workflow name {:?}: use a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                def.name
            ),
        );
    }
    for (name, input) in &def.inputs {
        if !valid_id(name) {
            errors.add(
                format!("inputs.{name}"),
                "invalid input name: use letters, digits and _",
            );
        }
        if let Some(default) = &input.default {
            if let Err(message) = super::inputs::check_type(name, input.ty, default) {
                errors.add(format!("inputs.{name}.default"), message);
            }
        }
    }
    let concurrency = def
        .concurrency
        .as_ref()
        .and_then(|c| c.count())
        .unwrap_or(caps.concurrency);
    if concurrency == 0 || concurrency > caps.concurrency {
        errors.add(
            "concurrency",
            format!("must be between 1 and the cap of {}", caps.concurrency),
        );
    }
    if def.budget.as_ref().is_some_and(|b| b.fuel == 0) {
        errors.add("budget.fuel", "must be at least 1");
    }
    match (&def.code, def.steps.is_empty()) {
        (None, true) => errors.add(
            "steps",
            "a workflow needs at least one step (or `code:`, a workflow module)",
        ),
        (Some(_), false) => errors.add("code", "a workflow has `steps` or `code`, not both"),
        (Some(_), true) if def.output.is_some() => {
            errors.add("output", "a code workflow's output is what its code returns")
        }
        (None, false) if def.workflow_limits.is_some() => {
            errors.add("workflow_limits", "applies to code workflows (`code:`) only")
        }
        _ => {}
    }
    if let Some(reference) = &def.code {
        if let Err(e) = crate::modules::Reference::parse(reference) {
            errors.add("code", e.to_string());
        } else if let Some(catalog) = catalog {
            if let Err(message) = catalog.check_code(reference) {
                errors.add("code", message);
            }
        }
    }

    // Ids first: every later check refers to steps by id.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (position, (location, step)) in steps.iter().enumerate() {
        if !valid_id(&step.id) {
            errors.add(
                location.as_str(),
                format!(
                    "invalid step id {:?}: use letters, digits and _ (it is read in templates as steps.<id>)",
                    step.id
                ),
            );
        } else if index.insert(step.id.clone(), position).is_some() {
            errors.add(location.as_str(), format!("duplicate step id {:?}", step.id));
        }
    }

    let default_limits = match &def.defaults.limits {
        Some(limits) => apply_limits(
            Limits::default(),
            limits,
            def.defaults.timeout,
            "defaults",
            caps,
            &mut errors,
        ),
        None => apply_limits(
            Limits::default(),
            &LimitsDef::default(),
            def.defaults.timeout,
            "defaults",
            caps,
            &mut errors,
        ),
    };
    let default_retry = match &def.defaults.retry {
        Some(retry) => check_retry(RetryPolicy::DEFAULT.merged(retry), "defaults.retry", caps, &mut errors),
        None => RetryPolicy::DEFAULT,
    };
    let retry_by_default = def.defaults.retry.is_some();
    let default_grants = def
        .defaults
        .grants
        .as_ref()
        .map(|g| grants::compile_grants(g, "defaults.grants", caps, &mut errors))
        .unwrap_or_default();
    if let Some(listed) = &def.secrets {
        for (i, name) in listed.iter().enumerate() {
            if let Err(message) = crate::service::secrets::check_name(name) {
                errors.add(format!("secrets[{i}]"), message);
            }
        }
    }

    let context = step::Context {
        index: &index,
        inputs: &def.inputs,
        default_limits: &default_limits,
        default_retry: &default_retry,
        retry_by_default,
        caps,
        catalog,
        secrets: def.secrets.as_deref(),
        default_grants: &default_grants,
    };
    let code = def.code.clone().map(|module| {
        code::compile_code(
            code::CodeParts {
                module,
                limits: def.workflow_limits.as_ref(),
                default_limits: &default_limits,
                default_retry: &default_retry,
                retry_by_default,
                default_grants: &default_grants,
                caps,
                secrets: def.secrets.as_deref(),
                inputs: &def.inputs,
            },
            &mut errors,
        )
    });
    let mut compiled = Vec::new();
    for (location, step) in steps {
        compiled.push(step::compile_step(location, step, context, &mut errors));
    }

    let output = def.output.as_ref().and_then(|output| {
        compile_value(output, "output", &mut errors).inspect(|value| {
            for template in value.templates() {
                let known = Known {
                    index: &index,
                    inputs: &def.inputs,
                    secrets: def.secrets.as_deref(),
                };
                check_paths(template, "output", None, Situational::default(), &known, &mut errors);
            }
        })
    });

    let triggers = triggers::compile_triggers(&def.triggers, &def.inputs, &mut errors);
    let keyed = def.concurrency.as_ref().and_then(|c| c.keyed());
    let throttle = throttle::declared(def.throttle.as_ref(), keyed, def.rate.as_ref(), "", &mut errors).map(|(throttle, at)| {
        let known = Known {
            index: &index,
            inputs: &def.inputs,
            secrets: def.secrets.as_deref(),
        };
        let reads = check_paths(&throttle.key, &at, None, Situational::default(), &known, &mut errors);
        if !reads.is_empty() {
            errors.add(
                at,
                "a workflow's throttle key may read `inputs`, `run` and `workflow`, not steps (give the step its own `throttle`)",
            );
        }
        throttle
    });

    if errors.0.is_empty() {
        let deps: Vec<Vec<usize>> = compiled.iter().map(|s| s.deps.clone()).collect();
        for cycle in find_cycles(&deps) {
            let names: Vec<&str> = cycle.iter().map(|&i| compiled[i].id.as_str()).collect();
            errors.add(
                format!("steps.{}", names[0]),
                format!("dependency cycle: {} -> {}", names.join(" -> "), names[0]),
            );
        }
    }
    if !errors.0.is_empty() {
        // A broken `defaults.grants.env` template is found once per step.
        let mut seen = std::collections::HashSet::new();
        errors
            .0
            .retain(|e| seen.insert((e.location.clone(), e.message.clone())));
        return Err(errors.0);
    }
    Ok(Workflow {
        name: def.name,
        description: def.description,
        inputs: def.inputs,
        concurrency,
        timeout: def.timeout,
        steps: compiled,
        output,
        triggers,
        secrets: def.secrets,
        budget_fuel: def.budget.map(|b| b.fuel),
        throttle,
        code,
        version: 0,
        index,
    })
}
