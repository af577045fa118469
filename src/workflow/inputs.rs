//! Workflow inputs: declared types, defaults and `required`, checked before a
//! run starts.

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::definition::{InputDef, InputType};
use super::template::kind_of;
use super::ValidationError;

/// Checks one value against a declared type.
pub fn check_type(name: &str, ty: InputType, value: &Value) -> Result<(), String> {
    let ok = match ty {
        InputType::Any => true,
        InputType::String => value.is_string(),
        InputType::Number => value.is_number(),
        InputType::Integer => value.is_i64() || value.is_u64(),
        InputType::Boolean => value.is_boolean(),
        InputType::Object => value.is_object(),
        InputType::Array => value.is_array(),
    };
    if ok {
        Ok(())
    } else {
        let expected = serde_json::to_value(ty_name(ty)).unwrap_or_default();
        Err(format!(
            "input {name} must be {}, got {}",
            expected.as_str().unwrap_or("?"),
            kind_of(value)
        ))
    }
}

fn ty_name(ty: InputType) -> &'static str {
    match ty {
        InputType::String => "a string",
        InputType::Number => "a number",
        InputType::Integer => "an integer",
        InputType::Boolean => "a boolean",
        InputType::Object => "an object",
        InputType::Array => "an array",
        InputType::Any => "any value",
    }
}

/// The run's input: `given` checked against the declarations, with defaults
/// filled in. With no declarations any object is accepted as it is.
pub fn resolve(declared: &IndexMap<String, InputDef>, given: &Value) -> Result<Value, Vec<String>> {
    check(declared, given).map_err(|errors| errors.into_iter().map(|e| e.message).collect())
}

/// Like [`resolve`], with each error located: `input` for the whole value
/// or an undeclared key, `input.<name>` for a declared input.
pub fn check(declared: &IndexMap<String, InputDef>, given: &Value) -> Result<Value, Vec<ValidationError>> {
    let located = |location: String, message: String| ValidationError { location, message };
    let given = match given {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        other => {
            return Err(vec![located(
                "input".into(),
                format!("the run input must be a JSON object, got {}", kind_of(other)),
            )])
        }
    };
    if declared.is_empty() {
        return Ok(Value::Object(given));
    }
    let mut errors = Vec::new();
    for key in given.keys() {
        if !declared.contains_key(key) {
            let names: Vec<&str> = declared.keys().map(String::as_str).collect();
            errors.push(located(
                "input".into(),
                format!("unknown input {key} (declared: {})", names.join(", ")),
            ));
        }
    }
    let mut resolved = Map::new();
    for (name, def) in declared {
        match given.get(name).or(def.default.as_ref()) {
            Some(value) => {
                if let Err(message) = check_type(name, def.ty, value) {
                    errors.push(located(format!("input.{name}"), message));
                }
                resolved.insert(name.clone(), value.clone());
            }
            None if def.required => errors.push(located(format!("input.{name}"), format!("input {name} is required"))),
            None => {
                resolved.insert(name.clone(), Value::Null);
            }
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(resolved))
    } else {
        Err(errors)
    }
}
