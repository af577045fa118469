//! Templates in a definition: compiling them with their locations, and
//! checking every path they read against the steps and inputs it declares.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::Value;

use super::Errors;
use crate::workflow::definition::InputDef;
use crate::workflow::template::{Template, TemplateValue, ROOTS};

pub(super) fn compile_value(value: &Value, location: &str, errors: &mut Errors) -> Option<TemplateValue> {
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

/// Names that exist only in some templates: `item` and `index` in a
/// for_each step's input and args, `event` in a wait's `match`.
#[derive(Clone, Copy, Default)]
pub(super) struct Situational<'a> {
    pub item: bool,
    pub event: bool,
    /// A webhook trigger's input: `request`, with the headers it lists.
    pub request: Option<&'a [String]>,
}

/// The names a definition declares, which templates are checked against.
#[derive(Clone, Copy)]
pub(super) struct Known<'a> {
    /// Step ids to positions.
    pub index: &'a HashMap<String, usize>,
    pub inputs: &'a IndexMap<String, InputDef>,
    /// `secrets:`, when the definition lists them.
    pub secrets: Option<&'a [String]>,
}

/// Checks every path a template reads; returns the steps it depends on.
pub(super) fn check_paths(
    template: &Template,
    location: &str,
    own: Option<usize>,
    situational: Situational,
    known: &Known,
    errors: &mut Errors,
) -> Vec<usize> {
    let Known { index, inputs, secrets } = *known;
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
            "item" | "index" if !situational.item => errors.add(
                location,
                format!(
                    "{source:?}: `{}` exists only in the input and args of a for_each step",
                    segments[0]
                ),
            ),
            "event" if !situational.event => errors.add(
                location,
                format!("{source:?}: `event` exists only in the `match` of a wait"),
            ),
            "request" => match (situational.request, segments.get(1), segments.get(2)) {
                (None, _, _) => errors.add(
                    location,
                    format!("{source:?}: `request` exists only in the input of a webhook trigger"),
                ),
                (Some(_), Some(field), _) if !["body", "headers"].contains(field) => {
                    errors.add(location, format!("{source:?}: request has only `body` and `headers`"))
                }
                (Some(listed), Some(&"headers"), Some(name)) if !listed.iter().any(|h| h == name) => errors.add(
                    location,
                    format!(
                        "{source:?} reads header {name:?}, which `headers:` does not list (listed: {})",
                        if listed.is_empty() {
                            "none".to_string()
                        } else {
                            listed.join(", ")
                        }
                    ),
                ),
                _ => {}
            },
            "event" if segments.get(1).is_some_and(|f| !["topic", "data", "id"].contains(f)) => {
                errors.add(location, format!("{source:?}: event has only `id`, `topic` and `data`"))
            }
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
            "secrets" => {
                if let (Some(listed), Some(name)) = (secrets, segments.get(1)) {
                    if !listed.iter().any(|s| s == name) {
                        errors.add(
                            location,
                            format!(
                                "{source:?} names secret {name:?}, which `secrets:` does not list (listed: {})",
                                if listed.is_empty() {
                                    "none".to_string()
                                } else {
                                    listed.join(", ")
                                }
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
