//! `transform`: filter, sort and trim a list of records.
//!
//! Input:
//! ```json
//! { "items": [{"name": "a", "score": 3}, ...],
//!   "where": {"field": "score", "gte": 2},      // optional
//!   "sort_by": "score", "descending": true,     // optional
//!   "limit": 10 }                               // optional
//! ```
//! Output: `{"items": [...], "count": N, "total": M}` where `total` counts the
//! items before `limit`. Bad input is a non-retryable guest error.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

use sandstep::step::host::{log, Level};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cmp::Ordering;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    items: Vec<Value>,
    #[serde(rename = "where")]
    filter: Option<Filter>,
    sort_by: Option<String>,
    #[serde(default)]
    descending: bool,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    field: String,
    equals: Option<Value>,
    gte: Option<f64>,
    lte: Option<f64>,
}

impl Filter {
    fn keeps(&self, item: &Value) -> bool {
        let value = item.get(&self.field);
        if let Some(expected) = &self.equals {
            if value != Some(expected) {
                return false;
            }
        }
        let number = value.and_then(Value::as_f64);
        if let Some(min) = self.gte {
            if !number.is_some_and(|n| n >= min) {
                return false;
            }
        }
        if let Some(max) = self.lte {
            if !number.is_some_and(|n| n <= max) {
                return false;
            }
        }
        true
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

struct Transform;

impl Guest for Transform {
    fn run(_ctx: Context, input: String) -> Result<String, StepError> {
        let input: Input = serde_json::from_str(&input).map_err(|e| StepError {
            message: format!("invalid input: {e}"),
            retryable: false,
        })?;
        let received = input.items.len();
        let mut items: Vec<Value> = match &input.filter {
            Some(filter) => input.items.into_iter().filter(|i| filter.keeps(i)).collect(),
            None => input.items,
        };
        if let Some(key) = &input.sort_by {
            items.sort_by(|a, b| compare(a.get(key), b.get(key)));
            if input.descending {
                items.reverse();
            }
        }
        let total = items.len();
        if let Some(limit) = input.limit {
            items.truncate(limit);
        }
        log(Level::Info, &format!("kept {total} of {received} items"));
        Ok(json!({ "count": items.len(), "total": total, "items": items }).to_string())
    }
}

export!(Transform);
