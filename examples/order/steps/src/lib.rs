//! The steps the order workflow calls, one module: `{"op": "validate" |
//! "charge" | "ship" | "notify", ...}`.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

use serde_json::{json, Value};

struct Steps;

fn fail(message: String) -> StepError {
    StepError { message, retryable: false }
}

impl Guest for Steps {
    fn run(ctx: Context, input: String) -> Result<String, StepError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| fail(e.to_string()))?;
        let order = &input["order"];
        let out = match input["op"].as_str().unwrap_or_default() {
            "validate" => {
                if order["items"].as_array().is_none_or(|items| items.is_empty()) {
                    return Err(fail("an order needs at least one item".into()));
                }
                json!({ "valid": true })
            }
            "charge" => json!({
                "charge_id": format!("ch-{}", order["order_id"].as_str().unwrap_or_default()),
                "amount": order["amount"],
                "idempotency_key": ctx.idempotency_key,
            }),
            "ship" => json!({ "item": input["item"], "tracking": format!("trk-{}-{}", input["order_id"].as_str().unwrap_or_default(), input["item"].as_str().unwrap_or_default()) }),
            "notify" => json!({ "notified": input["customer"], "shipped": input["shipped"] }),
            other => return Err(fail(format!("unknown op {other:?}"))),
        };
        Ok(out.to_string())
    }
}

export!(Steps);
