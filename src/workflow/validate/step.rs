//! Compiling one step of a definition.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use super::checks::{apply_limits, check_retry};
use super::grants::{compile_grants, Compiled};
use super::paths::{check_paths, compile_value, Known, Situational};
use super::throttle::Throttle;
use super::{Action, CachePolicy, Errors, ForEach, ModuleCatalog, RetryPolicy, Step};
use crate::limits::{Caps, Limits};
use crate::workflow::definition::{CacheDef, ConcurrencyDef, InputDef, LimitsDef, OnFailure, StepDef, WaitDef};
use crate::workflow::template::{Template, TemplateValue};

/// What every step of one definition is compiled against.
#[derive(Clone, Copy)]
pub(super) struct Context<'a> {
    /// Step ids to positions.
    pub index: &'a HashMap<String, usize>,
    pub inputs: &'a IndexMap<String, InputDef>,
    pub default_limits: &'a Limits,
    pub default_retry: &'a RetryPolicy,
    /// Whether `defaults.retry` was given (every step retries by default).
    pub retry_by_default: bool,
    pub caps: &'a Caps,
    pub catalog: Option<&'a dyn ModuleCatalog>,
    /// `secrets:`, when listed.
    pub secrets: Option<&'a [String]>,
    /// `defaults.grants`, compiled.
    pub default_grants: &'a Compiled,
}

/// Compiles one step: its action, templates (with the dependencies they
/// read), `when`, `for_each`, limits and retry policy; every error located.
pub(super) fn compile_step(location: String, step: StepDef, context: Context, errors: &mut Errors) -> Step {
    let Context {
        index,
        inputs,
        default_limits,
        default_retry,
        retry_by_default,
        caps,
        catalog,
        secrets,
        default_grants,
    } = context;
    let known = Known { index, inputs, secrets };
    let at = |field: &str| format!("{location}.{field}");
    let own = index.get(&step.id).copied();
    let per_item = Situational {
        item: step.for_each.is_some(),
        ..Situational::default()
    };

    let action = compile_action(&step, &location, &at, catalog, errors);
    let mut deps = needs(&step, index, own, &at, errors);
    let input_value = step.input.clone().unwrap_or_else(|| Value::Object(Default::default()));
    let input = compile_value(&input_value, &at("input"), errors).unwrap_or(TemplateValue::Literal(Value::Null));
    let granted = match (&action, &step.grants) {
        (Action::Module { .. }, Some(def)) => compile_grants(def, &at("grants"), caps, errors),
        (Action::Module { .. }, None) => default_grants.clone(),
        // Refused where the action's other fields are checked.
        _ => Compiled::default(),
    };
    let when = compile_expression(step.when.as_deref(), &at("when"), errors);
    let for_each = compile_for_each(step.for_each.as_ref(), &at("for_each"), caps, errors);
    let in_flight = check_concurrency(&step, &at, caps, errors);
    let (throttle, key_location) = compile_throttle(&step, &action, &location, &at, errors);

    // Every template of the step, where it is written and what it may read.
    let mut templated: Vec<(&Template, String, Situational)> = action_templates(&action, &at, per_item);
    templated.extend(input.templates().into_iter().map(|t| (t, at("input"), per_item)));
    for (name, value) in granted.env.iter() {
        let location = format!("{}.env.{name}", granted.location);
        templated.extend(value.templates().into_iter().map(|t| (t, location.clone(), per_item)));
    }
    if let Some(when) = &when {
        templated.push((when, at("when"), Situational::default()));
    }
    if let Some(ForEach::Template(t)) = &for_each {
        templated.push((t, at("for_each"), Situational::default()));
    }
    if let Some(throttle) = &throttle {
        templated.push((&throttle.key, key_location, per_item));
    }
    for (template, location, situational) in &templated {
        deps.extend(check_paths(template, location, own, *situational, &known, errors));
    }
    let reads_inputs = templated
        .iter()
        .any(|(template, _, _)| template.paths().iter().any(|p| p.split('.').next() == Some("inputs")));

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
    let cache = compile_cache(&step, &action, &granted, &at, errors);

    Step {
        id: step.id,
        action,
        input,
        deps: deps.into_iter().collect(),
        reads_inputs,
        when,
        for_each,
        concurrency: in_flight,
        retry,
        on_failure: step.on_failure,
        trigger: step.trigger,
        limits,
        grants: granted.grants,
        env: granted.env,
        cache,
        throttle,
        idempotency_key: None,
    }
}

/// What the step does: exactly one of `module`, `sleep`, `wait` and
/// `workflow`, with the fields that go with it.
fn compile_action(
    step: &StepDef,
    location: &str,
    at: &dyn Fn(&str) -> String,
    catalog: Option<&dyn ModuleCatalog>,
    errors: &mut Errors,
) -> Action {
    let action = match (&step.module, step.sleep, &step.wait, &step.workflow) {
        (Some(reference), None, None, None) => compile_module(step, reference, at, catalog, errors),
        (None, Some(duration), None, None) => {
            refuse_fields(step, "sleep", at, errors);
            Action::Sleep(duration)
        }
        (None, None, None, Some(name)) => compile_child(step, name, at, catalog, errors),
        (None, None, Some(wait), None) => {
            refuse_fields(step, "wait", at, errors);
            compile_wait(wait, at, errors)
        }
        (None, None, None, None) => {
            errors.add(
                location,
                "a step needs `module` (a module to run), `sleep` (a duration), `wait` (an event) or `workflow` (a child run)",
            );
            Action::Sleep(Duration::ZERO)
        }
        _ => {
            errors.add(
                location,
                "a step has one of `module`, `sleep`, `wait` or `workflow`, not several",
            );
            Action::Sleep(Duration::ZERO)
        }
    };
    if step.version.is_some() && step.workflow.is_none() {
        errors.add(at("version"), "`version` applies to `workflow` steps only");
    }
    action
}

fn compile_module(
    step: &StepDef,
    reference: &str,
    at: &dyn Fn(&str) -> String,
    catalog: Option<&dyn ModuleCatalog>,
    errors: &mut Errors,
) -> Action {
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
        reference: reference.to_owned(),
        args,
    }
}

/// A child run of workflow `name`: the child's own steps set retries,
/// limits and grants.
fn compile_child(
    step: &StepDef,
    name: &str,
    at: &dyn Fn(&str) -> String,
    catalog: Option<&dyn ModuleCatalog>,
    errors: &mut Errors,
) -> Action {
    for (field, present) in [
        ("args", !step.args.is_empty()),
        ("retry", step.retry.is_some()),
        ("limits", step.limits.is_some()),
        ("timeout", step.timeout.is_some()),
        ("grants", step.grants.is_some()),
    ] {
        if present {
            errors.add(
                at(field),
                format!("`{field}` cannot be combined with `workflow` (the child workflow's own steps set it)"),
            );
        }
    }
    if let Some(version) = step.version.filter(|v| *v < 1) {
        errors.add(at("version"), format!("versions start at 1, not {version}"));
    } else if let Some(catalog) = catalog {
        if let Err(message) = catalog.check_workflow(name, step.version) {
            errors.add(at("workflow"), message);
        }
    }
    Action::Workflow {
        name: name.to_owned(),
        version: step.version,
    }
}

fn compile_wait(wait: &WaitDef, at: &dyn Fn(&str) -> String, errors: &mut Errors) -> Action {
    let topic = compile_value(&Value::String(wait.event.clone()), &at("wait.event"), errors)
        .unwrap_or(TemplateValue::Literal(Value::Null));
    if let TemplateValue::Literal(literal) = &topic {
        if let Err(message) = check_topic(literal.as_str().unwrap_or_default()) {
            errors.add(at("wait.event"), message);
        }
    }
    let matches = compile_expression(wait.matches.as_deref(), &at("wait.match"), errors);
    if wait.timeout == Some(Duration::ZERO) {
        errors.add(at("wait.timeout"), "must be longer than zero");
    }
    Action::Wait {
        topic,
        timeout: wait.timeout,
        matches,
    }
}

/// The templates an action holds: a wait's topic and match (which reads
/// `event`), a module's arguments (per item under `for_each`).
fn action_templates<'a>(
    action: &'a Action,
    at: &dyn Fn(&str) -> String,
    per_item: Situational<'static>,
) -> Vec<(&'a Template, String, Situational<'static>)> {
    let mut templated = Vec::new();
    match action {
        Action::Wait { topic, matches, .. } => {
            templated.extend(
                topic
                    .templates()
                    .into_iter()
                    .map(|t| (t, at("wait.event"), Situational::default())),
            );
            if let Some(matches) = matches {
                let event = Situational {
                    event: true,
                    ..Situational::default()
                };
                templated.push((matches, at("wait.match"), event));
            }
        }
        Action::Module { args, .. } => {
            for (i, arg) in args.iter().enumerate() {
                let location = at(&format!("args[{i}]"));
                templated.extend(arg.templates().into_iter().map(|t| (t, location.clone(), per_item)));
            }
        }
        Action::Sleep(_) | Action::Workflow { .. } => {}
    }
    templated
}

/// The steps named in `needs`, as positions.
fn needs(
    step: &StepDef,
    index: &HashMap<String, usize>,
    own: Option<usize>,
    at: &dyn Fn(&str) -> String,
    errors: &mut Errors,
) -> BTreeSet<usize> {
    let mut deps = BTreeSet::new();
    for need in &step.needs {
        match index.get(need) {
            Some(&i) if Some(i) == own => errors.add(at("needs"), "a step cannot need itself"),
            Some(&i) => {
                deps.insert(i);
            }
            None => errors.add(at("needs"), format!("unknown step {need:?}")),
        }
    }
    deps
}

/// A `{{ }}` expression (`when`, `wait.match`), when given.
fn compile_expression(source: Option<&str>, location: &str, errors: &mut Errors) -> Option<Template> {
    match Template::compile_expression(source?) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.add(location, e);
            None
        }
    }
}

/// `for_each`: an array of items (at most the cap) or a template.
fn compile_for_each(for_each: Option<&Value>, location: &str, caps: &Caps, errors: &mut Errors) -> Option<ForEach> {
    match for_each? {
        Value::String(source) if Template::is_template(source) => match Template::compile(source) {
            Ok(t) => Some(ForEach::Template(t)),
            Err(e) => {
                errors.add(location, e);
                None
            }
        },
        Value::Array(items) => {
            if items.len() > caps.for_each_items {
                errors.add(
                    location,
                    format!("{} items, more than the cap of {}", items.len(), caps.for_each_items),
                );
            }
            Some(ForEach::Items(items.clone()))
        }
        other => {
            errors.add(
                location,
                format!(
                    "expected an array or a template such as \"{{{{ steps.x.output.items }}}}\", got {}",
                    crate::workflow::template::kind_of(other)
                ),
            );
            None
        }
    }
}

/// A number `concurrency`: items of a `for_each` in flight at once.
fn check_concurrency(step: &StepDef, at: &dyn Fn(&str) -> String, caps: &Caps, errors: &mut Errors) -> Option<u32> {
    let in_flight = step.concurrency.as_ref().and_then(ConcurrencyDef::count);
    match in_flight {
        Some(_) if step.for_each.is_none() => errors.add(
            at("concurrency"),
            "a number `concurrency` applies to `for_each` steps only (a keyed limit is `{ key, limit }`)",
        ),
        Some(0) => errors.add(at("concurrency"), "must be at least 1"),
        Some(n) if n > caps.concurrency => errors.add(
            at("concurrency"),
            format!("{n} is above the cap of {}", caps.concurrency),
        ),
        _ => {}
    }
    in_flight
}

/// `throttle`, a keyed `concurrency` or `rate`, for a module step only;
/// with where its key template is written.
fn compile_throttle(
    step: &StepDef,
    action: &Action,
    location: &str,
    at: &dyn Fn(&str) -> String,
    errors: &mut Errors,
) -> (Option<Throttle>, String) {
    let keyed = step.concurrency.as_ref().and_then(ConcurrencyDef::keyed);
    let declared = super::throttle::declared(step.throttle.as_ref(), keyed, step.rate.as_ref(), location, errors);
    if !matches!(action, Action::Module { .. }) {
        let field = match (&step.throttle, keyed, &step.rate) {
            (Some(_), _, _) => Some("throttle"),
            (None, Some(_), _) => Some("concurrency"),
            (None, None, Some(_)) => Some("rate"),
            (None, None, None) => None,
        };
        if let Some(field) = field {
            errors.add(at(field), format!("`{field}` applies to steps that run a module"));
        }
    }
    match declared {
        Some((throttle, at)) => (Some(throttle), at),
        None => (None, String::new()),
    }
}

/// `cache:` of a module step; refused for a step granted HTTP or files
/// unless it says `unsafe_effects: true`.
fn compile_cache(
    step: &StepDef,
    action: &Action,
    granted: &Compiled,
    at: &dyn Fn(&str) -> String,
    errors: &mut Errors,
) -> Option<CachePolicy> {
    let (ttl, unsafe_effects) = match step.cache.as_ref()? {
        CacheDef::On(false) => return None,
        CacheDef::On(true) => (None, false),
        CacheDef::Policy(policy) => (policy.ttl, policy.unsafe_effects),
    };
    if !matches!(action, Action::Module { .. }) {
        errors.add(at("cache"), "`cache` applies to steps that run a module");
        return None;
    }
    if ttl == Some(Duration::ZERO) {
        errors.add(at("cache.ttl"), "must be longer than zero");
    }
    if granted.grants.has_effects() && !unsafe_effects {
        let what: Vec<&str> = [
            ("http", !granted.grants.http.is_empty()),
            (
                "files",
                granted.grants.scratch.is_some() || !granted.grants.read.is_empty(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        errors.add(
            at("cache"),
            format!(
                "`cache` is refused for a step granted {} ({}.{}): a cached output would skip its effects; say `cache: {{ unsafe_effects: true }}` if that is intended",
                what.join(" and "),
                granted.location,
                what[0]
            ),
        );
    }
    Some(CachePolicy { ttl })
}

/// Fields a `sleep` or `wait` step cannot have: it runs no module.
fn refuse_fields(step: &StepDef, action: &str, at: &dyn Fn(&str) -> String, errors: &mut Errors) {
    for (field, present) in [
        ("for_each", step.for_each.is_some()),
        ("input", step.input.is_some()),
        ("args", !step.args.is_empty()),
        ("retry", step.retry.is_some()),
        ("limits", step.limits.is_some()),
        ("grants", step.grants.is_some()),
        ("timeout", step.timeout.is_some() && action == "wait"),
    ] {
        if present {
            let hint = if field == "timeout" {
                " (a wait's own timeout is `wait.timeout`)"
            } else {
                ""
            };
            errors.add(at(field), format!("`{field}` cannot be combined with `{action}`{hint}"));
        }
    }
}

/// Longest event topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 256;

/// Whether `topic` can name events: 1 to 256 characters, none of them
/// whitespace, a control character or a byte-order mark (the API's
/// pattern, `^[^\s\x00-\x1f\x7f-\x9f]+$`, says the same).
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("an event topic cannot be empty".into());
    }
    if topic.chars().count() > MAX_TOPIC_CHARS {
        return Err(format!("an event topic has at most {MAX_TOPIC_CHARS} characters"));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '\u{feff}')
    {
        return Err(format!("an event topic cannot contain {c:?}"));
    }
    Ok(())
}
