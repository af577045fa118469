//! Workflow definitions: parsing YAML or JSON ([`definition`]), templates and
//! expressions ([`template`]), input declarations ([`inputs`]), and the
//! validation that turns a definition into a runnable [`Workflow`]
//! ([`validate`]).

pub mod definition;
pub mod inputs;
pub mod template;
pub mod validate;

pub use validate::{
    check_call_name, check_topic, Action, CachePolicy, CallAction, CallRefused, Code, ForEach, McpTool, ModuleCatalog,
    Rate, RetryPolicy, Step, Throttle, Workflow,
};

use serde_json::Value;

use crate::limits::Caps;
use definition::{StepDef, WorkflowDef};

/// One problem in a definition, with where it is (`steps.fetch.input.to`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ValidationError {
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Parses and validates a definition (YAML, of which JSON is a subset),
/// reporting every error at once.
pub fn load(source: &str, caps: &Caps, catalog: Option<&dyn ModuleCatalog>) -> Result<Workflow, Vec<ValidationError>> {
    let (def, steps, errors) = parse(source)?;
    validate::validate(def, steps, errors, caps, catalog)
}

type Parsed = (WorkflowDef, Vec<(String, StepDef)>, Vec<ValidationError>);

/// Parses the document, then each step on its own so that every malformed
/// step is reported, located by its id (`steps.fetch`) or position (`steps[2]`).
fn parse(source: &str) -> Result<Parsed, Vec<ValidationError>> {
    let error = |location: &str, message: String| {
        vec![ValidationError {
            location: location.into(),
            message,
        }]
    };
    crate::nesting::check_depth("the definition", source).map_err(|e| error("document", e))?;
    let document: Value = if definition::is_json(source) {
        serde_json::from_str(source).map_err(|e| error("document", format!("invalid JSON: {e}")))?
    } else {
        serde_yaml_ng::from_str(source).map_err(|e| error("document", format!("invalid YAML: {e}")))?
    };
    if !document.is_object() {
        return Err(error(
            "document",
            format!(
                "expected a mapping with name and steps, got {}",
                template::kind_of(&document)
            ),
        ));
    }
    let def: WorkflowDef = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        // A key that is empty (YAML `?` or `"": 1`) has no path of its own.
        let location = if path == "." || path.is_empty() {
            "workflow".to_string()
        } else {
            path
        };
        error(&location, e.into_inner().to_string())
    })?;
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    for (position, raw) in def.steps.iter().enumerate() {
        let location = match raw.get("id").and_then(Value::as_str) {
            Some(id) => format!("steps.{id}"),
            None => format!("steps[{position}]"),
        };
        match serde_path_to_error::deserialize::<_, StepDef>(raw) {
            Ok(step) => steps.push((location, step)),
            Err(e) => {
                let path = e.path().to_string();
                let at = if path == "." || path.is_empty() {
                    location
                } else {
                    format!("{location}.{path}")
                };
                errors.push(ValidationError {
                    location: at,
                    message: e.into_inner().to_string(),
                });
            }
        }
    }
    Ok((def, steps, errors))
}
