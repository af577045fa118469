//! Validation: a parsed [`WorkflowDef`] becomes a [`Workflow`] whose every
//! reference resolves, or a list of every error with its location.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use super::definition::{InputDef, LimitsDef, OnFailure, RetryDef, StepDef, Trigger, WorkflowDef};
use super::template::{Template, TemplateValue, ROOTS};
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
    index: HashMap<String, usize>,
}

impl Workflow {
    /// The position of a step by id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
}

#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub input: TemplateValue,
    /// Every dependency: `needs` plus each step a template reads, by index.
    pub deps: Vec<usize>,
    pub when: Option<Template>,
    pub for_each: Option<ForEach>,
    /// Items of this step running at once (for_each).
    pub concurrency: Option<u32>,
    pub retry: RetryPolicy,
    pub on_failure: OnFailure,
    pub trigger: Trigger,
    pub limits: Limits,
}

#[derive(Debug)]
pub enum Action {
    /// Run a module; `args` go to a command.
    Module {
        reference: String,
        args: Vec<TemplateValue>,
    },
    /// Wait, then succeed with a null output.
    Sleep(Duration),
}

#[derive(Debug)]
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
    let concurrency = def.concurrency.unwrap_or(caps.concurrency);
    if concurrency == 0 || concurrency > caps.concurrency {
        errors.add(
            "concurrency",
            format!("must be between 1 and the cap of {}", caps.concurrency),
        );
    }
    if def.steps.is_empty() {
        errors.add("steps", "a workflow needs at least one step");
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

    let mut compiled = Vec::new();
    for (location, step) in steps {
        compiled.push(compile_step(
            location,
            step,
            &index,
            &def.inputs,
            &default_limits,
            &default_retry,
            retry_by_default,
            caps,
            catalog,
            &mut errors,
        ));
    }

    let output = def.output.as_ref().and_then(|output| {
        compile_value(output, "output", &mut errors).inspect(|value| {
            for template in value.templates() {
                check_paths(template, "output", None, false, &index, &def.inputs, &mut errors);
            }
        })
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
        index,
    })
}

#[allow(clippy::too_many_arguments)]
fn compile_step(
    location: String,
    step: StepDef,
    index: &HashMap<String, usize>,
    inputs: &IndexMap<String, InputDef>,
    default_limits: &Limits,
    default_retry: &RetryPolicy,
    retry_by_default: bool,
    caps: &Caps,
    catalog: Option<&dyn ModuleCatalog>,
    errors: &mut Errors,
) -> Step {
    let at = |field: &str| format!("{location}.{field}");
    let mut deps: BTreeSet<usize> = BTreeSet::new();
    let own = index.get(&step.id).copied();
    let is_for_each = step.for_each.is_some();

    let action = match (&step.module, step.sleep) {
        (Some(_), Some(_)) => {
            errors.add(location.as_str(), "a step has either `module` or `sleep`, not both");
            Action::Sleep(Duration::ZERO)
        }
        (None, None) => {
            errors.add(
                location.as_str(),
                "a step needs `module` (a module to run) or `sleep` (a duration)",
            );
            Action::Sleep(Duration::ZERO)
        }
        (None, Some(duration)) => {
            for (field, present) in [
                ("for_each", is_for_each),
                ("input", step.input.is_some()),
                ("args", !step.args.is_empty()),
                ("retry", step.retry.is_some()),
                ("limits", step.limits.is_some()),
            ] {
                if present {
                    errors.add(at(field), format!("`{field}` cannot be combined with `sleep`"));
                }
            }
            Action::Sleep(duration)
        }
        (Some(reference), None) => {
            if let Err(e) = crate::modules::Reference::parse(reference) {
                errors.add(at("module"), e.to_string());
            } else if let Some(catalog) = catalog {
                if let Err(message) = catalog.check(reference) {
                    errors.add(at("module"), message);
                }
            }
            let mut args = Vec::new();
            for (i, arg) in step.args.iter().enumerate() {
                let value = Value::String(arg.clone());
                if let Some(compiled) = compile_value(&value, &at(&format!("args[{i}]")), errors) {
                    args.push(compiled);
                }
            }
            Action::Module {
                reference: reference.clone(),
                args,
            }
        }
    };

    for need in &step.needs {
        match index.get(need) {
            Some(&i) if Some(i) == own => errors.add(at("needs"), "a step cannot need itself"),
            Some(&i) => {
                deps.insert(i);
            }
            None => errors.add(at("needs"), format!("unknown step {need:?}")),
        }
    }

    let input_value = step.input.clone().unwrap_or_else(|| Value::Object(Default::default()));
    let input = compile_value(&input_value, &at("input"), errors).unwrap_or(TemplateValue::Literal(Value::Null));
    let mut templated: Vec<(&Template, String, bool)> =
        input.templates().into_iter().map(|t| (t, at("input"), true)).collect();
    if let Action::Module { args, .. } = &action {
        for (i, arg) in args.iter().enumerate() {
            templated.extend(
                arg.templates()
                    .into_iter()
                    .map(|t| (t, at(&format!("args[{i}]")), true)),
            );
        }
    }

    let when = step
        .when
        .as_deref()
        .and_then(|source| match Template::compile_expression(source) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.add(at("when"), e);
                None
            }
        });
    if let Some(when) = &when {
        templated.push((when, at("when"), false));
    }

    let for_each = match &step.for_each {
        None => None,
        Some(Value::String(source)) if Template::is_template(source) => match Template::compile(source) {
            Ok(t) => Some(ForEach::Template(t)),
            Err(e) => {
                errors.add(at("for_each"), e);
                None
            }
        },
        Some(Value::Array(items)) => {
            if items.len() > caps.for_each_items {
                errors.add(
                    at("for_each"),
                    format!("{} items, more than the cap of {}", items.len(), caps.for_each_items),
                );
            }
            Some(ForEach::Items(items.clone()))
        }
        Some(other) => {
            errors.add(
                at("for_each"),
                format!(
                    "expected an array or a template such as \"{{{{ steps.x.output.items }}}}\", got {}",
                    super::template::kind_of(other)
                ),
            );
            None
        }
    };
    if let Some(ForEach::Template(t)) = &for_each {
        templated.push((t, at("for_each"), false));
    }
    match step.concurrency {
        Some(_) if !is_for_each => errors.add(at("concurrency"), "`concurrency` applies to `for_each` steps only"),
        Some(0) => errors.add(at("concurrency"), "must be at least 1"),
        Some(n) if n > caps.concurrency => errors.add(
            at("concurrency"),
            format!("{n} is above the cap of {}", caps.concurrency),
        ),
        _ => {}
    }

    for (template, location, item_allowed) in &templated {
        let item_ok = *item_allowed && is_for_each;
        for dep in check_paths(template, location, own, item_ok, index, inputs, errors) {
            deps.insert(dep);
        }
    }

    let limits = apply_limits(
        default_limits.clone(),
        step.limits.as_ref().unwrap_or(&LimitsDef::default()),
        step.timeout,
        &location,
        caps,
        errors,
    );
    let retry = match (&step.retry, step.on_failure, retry_by_default) {
        (Some(retry), _, _) => check_retry(default_retry.merged(retry), &at("retry"), caps, errors),
        (None, OnFailure::Retry, _) | (None, _, true) => default_retry.clone(),
        (None, _, false) => RetryPolicy::NONE,
    };

    Step {
        id: step.id,
        action,
        input,
        deps: deps.into_iter().collect(),
        when,
        for_each,
        concurrency: step.concurrency,
        retry,
        on_failure: step.on_failure,
        trigger: step.trigger,
        limits,
    }
}

fn compile_value(value: &Value, location: &str, errors: &mut Errors) -> Option<TemplateValue> {
    match TemplateValue::compile(value) {
        Ok(compiled) => Some(compiled),
        Err(found) => {
            for (inner, message) in found {
                let location = if inner.is_empty() {
                    location.to_string()
                } else if inner.starts_with('[') {
                    format!("{location}{inner}")
                } else {
                    format!("{location}.{inner}")
                };
                errors.add(location, message);
            }
            None
        }
    }
}

/// Checks every path a template reads; returns the steps it depends on.
fn check_paths(
    template: &Template,
    location: &str,
    own: Option<usize>,
    item_allowed: bool,
    index: &HashMap<String, usize>,
    inputs: &IndexMap<String, InputDef>,
    errors: &mut Errors,
) -> Vec<usize> {
    let mut deps = Vec::new();
    let source = template.source();
    for path in template.paths() {
        let segments: Vec<&str> = path.split('.').collect();
        match segments[0] {
            "steps" => {
                match (segments.get(1), segments.get(2)) {
                    (Some(id), Some(field)) => match index.get(*id) {
                        Some(&i) if Some(i) == own => {
                            errors.add(location, format!("{source:?} reads the step's own result"))
                        }
                        Some(&i) => {
                            if !["output", "result", "status"].contains(field) {
                                errors.add(
                                location,
                                format!("{source:?}: steps.{id}.{field} is not a step field (use output, result or status)"),
                            );
                            }
                            deps.push(i);
                        }
                        None => errors.add(location, format!("{source:?} refers to unknown step {id:?}")),
                    },
                    _ => errors.add(
                        location,
                        format!("{source:?}: refer to a step as steps.<id>.output, .result or .status"),
                    ),
                }
            }
            "item" | "index" if !item_allowed => errors.add(
                location,
                format!(
                    "{source:?}: `{}` exists only in the input and args of a for_each step",
                    segments[0]
                ),
            ),
            "inputs" if !inputs.is_empty() => {
                if let Some(name) = segments.get(1) {
                    if !inputs.contains_key(*name) {
                        let declared: Vec<&str> = inputs.keys().map(String::as_str).collect();
                        errors.add(
                            location,
                            format!(
                                "{source:?} reads undeclared input {name:?} (declared: {})",
                                declared.join(", ")
                            ),
                        );
                    }
                }
            }
            "run" if segments.get(1).is_some_and(|f| *f != "id") => {
                errors.add(location, format!("{source:?}: run has only `id`"))
            }
            "workflow" if segments.get(1).is_some_and(|f| *f != "name") => {
                errors.add(location, format!("{source:?}: workflow has only `name`"))
            }
            root if !ROOTS.contains(&root) => errors.add(
                location,
                format!("{source:?} reads unknown name {root:?} (known: {})", ROOTS.join(", ")),
            ),
            _ => {}
        }
    }
    deps
}

fn apply_limits(
    mut limits: Limits,
    def: &LimitsDef,
    timeout: Option<Duration>,
    location: &str,
    caps: &Caps,
    errors: &mut Errors,
) -> Limits {
    let above = |what: &str, value: String, cap: String| format!("{what} {value} is above the cap of {cap}");
    if let Some(fuel) = def.fuel {
        if fuel > caps.fuel {
            errors.add(
                format!("{location}.limits.fuel"),
                above("fuel", fuel.to_string(), caps.fuel.to_string()),
            );
        }
        limits.fuel = fuel;
    }
    let sizes = [
        ("memory", def.memory, caps.memory, &mut limits.memory),
        ("output", def.output, caps.output_bytes, &mut limits.output_bytes),
        ("logs", def.logs, caps.log_bytes, &mut limits.log_bytes),
    ];
    for (field, value, cap, slot) in sizes {
        if let Some(value) = value {
            if value > cap {
                errors.add(
                    format!("{location}.limits.{field}"),
                    above(field, crate::units::format_size(value), crate::units::format_size(cap)),
                );
            }
            *slot = value;
        }
    }
    if let Some(timeout) = timeout {
        if timeout > caps.timeout {
            errors.add(
                format!("{location}.timeout"),
                above(
                    "timeout",
                    crate::units::format_duration(timeout),
                    crate::units::format_duration(caps.timeout),
                ),
            );
        } else if timeout.is_zero() {
            errors.add(format!("{location}.timeout"), "must be longer than zero");
        }
        limits.timeout = timeout;
    }
    limits
}

fn check_retry(policy: RetryPolicy, location: &str, caps: &Caps, errors: &mut Errors) -> RetryPolicy {
    if policy.max_attempts == 0 || policy.max_attempts > caps.max_attempts {
        errors.add(
            format!("{location}.max_attempts"),
            format!("must be between 1 and {}", caps.max_attempts),
        );
    }
    if !(policy.backoff >= 1.0 && policy.backoff.is_finite()) {
        errors.add(format!("{location}.backoff"), "must be at least 1.0");
    }
    if !(0.0..=1.0).contains(&policy.jitter) {
        errors.add(format!("{location}.jitter"), "must be between 0.0 and 1.0");
    }
    if policy.max_interval < policy.initial_interval {
        errors.add(
            format!("{location}.max_interval"),
            "must not be shorter than initial_interval",
        );
    }
    policy
}

/// Every elementary cycle found by depth-first search, each once, starting
/// at its first step in definition order.
fn find_cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(node: usize, deps: &[Vec<usize>], marks: &mut [Mark], stack: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        marks[node] = Mark::Active;
        stack.push(node);
        for &dep in &deps[node] {
            match marks[dep] {
                Mark::New => visit(dep, deps, marks, stack, out),
                Mark::Active => {
                    let start = stack
                        .iter()
                        .position(|&n| n == dep)
                        .expect("active nodes are on the stack");
                    let mut cycle: Vec<usize> = stack[start..].to_vec();
                    // Report it following `needs`, starting at its earliest step.
                    let first = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, &n)| n)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    cycle.rotate_left(first);
                    if !out.contains(&cycle) {
                        out.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
    }
    let mut marks = vec![Mark::New; deps.len()];
    let mut out = Vec::new();
    for node in 0..deps.len() {
        if marks[node] == Mark::New {
            visit(node, deps, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out
}
