//! `hello`: the smallest useful step. Input `{"name": "Ada"}`, output
//! `{"greeting": "Hello, Ada!"}`. A missing name is a non-retryable error.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

use sandstep::step::host::{log, Level};

struct Hello;

impl Guest for Hello {
    fn run(ctx: Context, input: String) -> Result<String, StepError> {
        let input: serde_json::Value = serde_json::from_str(&input).map_err(|e| StepError {
            message: format!("input is not JSON: {e}"),
            retryable: false,
        })?;
        let name = input.get("name").and_then(|n| n.as_str()).ok_or_else(|| StepError {
            message: "input.name must be a string".into(),
            retryable: false,
        })?;
        log(Level::Info, &format!("greeting {name} (attempt {})", ctx.attempt));
        Ok(serde_json::json!({ "greeting": format!("Hello, {name}!") }).to_string())
    }
}

export!(Hello);
