//! The definition as a whole: its header (name, inputs, concurrency,
//! budget, `steps` or `code`), its step ids, its defaults, then every step,
//! the output, triggers and throttle, and finally cycles.

use std::collections::{HashMap, HashSet};

use super::checks::{apply_limits, check_retry, find_cycles};
use super::grants::{self, Compiled};
use super::paths::{check_paths, compile_value, Known, Situational};
use super::{code, step, throttle, triggers, Errors, ModuleCatalog, RetryPolicy, Step, Throttle, Workflow};
use crate::limits::{Caps, Limits};
use crate::workflow::definition::{LimitsDef, StepDef, WorkflowDef};
use crate::workflow::template::TemplateValue;
use crate::workflow::ValidationError;

/// Validates a parsed definition against the engine's caps and, when given,
/// a module catalog.
pub fn validate(
    def: WorkflowDef,
    steps: Vec<(String, StepDef)>,
    errors: Vec<ValidationError>,
    caps: &Caps,
    catalog: Option<&dyn ModuleCatalog>,
) -> Result<Workflow, Vec<ValidationError>> {
    let mut errors = Errors(errors);
    let concurrency = check_header(&def, caps, catalog, &mut errors);
    // Ids first: every later check refers to steps by id.
    let index = index_steps(&steps, &mut errors);
    let defaults = Defaults::compile(&def, caps, &mut errors);
    let known = Known {
        index: &index,
        inputs: &def.inputs,
        secrets: def.secrets.as_deref(),
    };

    let code = def.code.clone().map(|module| {
        code::compile_code(
            code::CodeParts {
                module,
                limits: def.workflow_limits.as_ref(),
                default_limits: &defaults.limits,
                default_retry: &defaults.retry,
                retry_by_default: defaults.retry_by_default,
                default_grants: &defaults.grants,
                caps,
                secrets: def.secrets.as_deref(),
                inputs: &def.inputs,
            },
            &mut errors,
        )
    });
    let context = step::Context {
        index: &index,
        inputs: &def.inputs,
        default_limits: &defaults.limits,
        default_retry: &defaults.retry,
        retry_by_default: defaults.retry_by_default,
        caps,
        catalog,
        secrets: def.secrets.as_deref(),
        default_grants: &defaults.grants,
    };
    let compiled: Vec<Step> = steps
        .into_iter()
        .map(|(location, step)| step::compile_step(location, step, context, &mut errors))
        .collect();
    let output = compile_output(def.output.as_ref(), &known, &mut errors);
    let triggers = triggers::compile_triggers(&def.triggers, &def.inputs, caps, &mut errors);
    let throttle = compile_throttle(&def, &known, &mut errors);
    let mcp = compile_mcp(&def, &mut errors);

    if errors.0.is_empty() {
        check_cycles(&compiled, &mut errors);
    }
    if !errors.0.is_empty() {
        // A broken `defaults.grants.env` template is found once per step.
        let mut seen = HashSet::new();
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
        mcp,
        index,
    })
}

/// `mcp:`: the tool's description, and a name no built-in tool takes.
fn compile_mcp(def: &WorkflowDef, errors: &mut Errors) -> Option<super::McpTool> {
    let mcp = def.mcp.as_ref().filter(|mcp| mcp.offered)?;
    if def.name.starts_with(super::MCP_BUILTIN_PREFIX) {
        errors.add(
            "mcp",
            format!(
                "the tool name {:?} starts with {:?}, which is kept for Sandstep's built-in tools: rename the workflow",
                def.name,
                super::MCP_BUILTIN_PREFIX
            ),
        );
    }
    if let Some(description) = &mcp.description {
        if description.trim().is_empty() || description.chars().count() > super::MAX_MCP_DESCRIPTION {
            errors.add(
                "mcp.description",
                format!("must be 1 to {} characters", super::MAX_MCP_DESCRIPTION),
            );
        }
    }
    Some(super::McpTool {
        description: mcp.description.clone().or_else(|| def.description.clone()),
    })
}

/// The name, inputs, run concurrency, budget, and `steps` or `code`;
/// answers the run concurrency.
fn check_header(def: &WorkflowDef, caps: &Caps, catalog: Option<&dyn ModuleCatalog>, errors: &mut Errors) -> u32 {
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
        if !super::valid_id(name) {
            errors.add(
                format!("inputs.{name}"),
                "invalid input name: use letters, digits and _",
            );
        }
        if let Some(default) = &input.default {
            if let Err(message) = crate::workflow::inputs::check_type(name, input.ty, default) {
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
    concurrency
}

/// Step ids to positions; invalid and duplicate ids refused.
fn index_steps(steps: &[(String, StepDef)], errors: &mut Errors) -> HashMap<String, usize> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (position, (location, step)) in steps.iter().enumerate() {
        if !super::valid_id(&step.id) {
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
    index
}

/// `defaults:`, compiled; the listed `secrets:` checked.
struct Defaults {
    limits: Limits,
    retry: RetryPolicy,
    /// Whether `defaults.retry` was given (every step retries by default).
    retry_by_default: bool,
    grants: Compiled,
}

impl Defaults {
    fn compile(def: &WorkflowDef, caps: &Caps, errors: &mut Errors) -> Defaults {
        let limits = apply_limits(
            Limits::default(),
            def.defaults.limits.as_ref().unwrap_or(&LimitsDef::default()),
            def.defaults.timeout,
            "defaults",
            caps,
            errors,
        );
        let retry = match &def.defaults.retry {
            Some(retry) => check_retry(RetryPolicy::DEFAULT.merged(retry), "defaults.retry", caps, errors),
            None => RetryPolicy::DEFAULT,
        };
        let grants = def
            .defaults
            .grants
            .as_ref()
            .map(|g| grants::compile_grants(g, "defaults.grants", caps, errors))
            .unwrap_or_default();
        for (i, name) in def.secrets.iter().flatten().enumerate() {
            if let Err(message) = crate::service::secrets::check_name(name) {
                errors.add(format!("secrets[{i}]"), message);
            }
        }
        Defaults {
            limits,
            retry,
            retry_by_default: def.defaults.retry.is_some(),
            grants,
        }
    }
}

/// The run's `output:` template, reading any step.
fn compile_output(output: Option<&serde_json::Value>, known: &Known, errors: &mut Errors) -> Option<TemplateValue> {
    compile_value(output?, "output", errors).inspect(|value| {
        for template in value.templates() {
            check_paths(template, "output", None, Situational::default(), known, errors);
        }
    })
}

/// The workflow's own `throttle`, keyed `concurrency` or `rate`: its key is
/// known when the run starts, so it reads no step.
fn compile_throttle(def: &WorkflowDef, known: &Known, errors: &mut Errors) -> Option<Throttle> {
    let keyed = def.concurrency.as_ref().and_then(|c| c.keyed());
    let (throttle, at) = throttle::declared(def.throttle.as_ref(), keyed, def.rate.as_ref(), "", errors)?;
    let reads = check_paths(&throttle.key, &at, None, Situational::default(), known, errors);
    if !reads.is_empty() {
        errors.add(
            at,
            "a workflow's throttle key may read `inputs`, `run` and `workflow`, not steps (give the step its own `throttle`)",
        );
    }
    Some(throttle)
}

fn check_cycles(compiled: &[Step], errors: &mut Errors) {
    let deps: Vec<Vec<usize>> = compiled.iter().map(|s| s.deps.clone()).collect();
    for cycle in find_cycles(&deps) {
        let names: Vec<&str> = cycle.iter().map(|&i| compiled[i].id.as_str()).collect();
        errors.add(
            format!("steps.{}", names[0]),
            format!("dependency cycle: {} -> {}", names.join(" -> "), names[0]),
        );
    }
}
