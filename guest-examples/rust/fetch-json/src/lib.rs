//! `fetch-json`: fetches JSON over HTTP with `wstd` (standard wasi:http).
//!
//! `{"url": "https://api.example.com/users/7"}` → `{"status": 200, "body": {...}}`;
//! with `"body"`, the request is a POST of that JSON (`"method"` overrides).
//! The step must be granted the host (`grants: { http: [api.example.com] }`).
//! A refused or failed request, or an answer that is not JSON, is a guest
//! error: retryable for network errors and 5xx answers, not for the rest.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

use serde_json::{json, Value};
use wstd::http::{Client, Request};

struct FetchJson;

fn error(message: impl Into<String>, retryable: bool) -> StepError {
    StepError {
        message: message.into(),
        retryable,
    }
}

async fn fetch(input: &Value) -> Result<Value, StepError> {
    let url = input["url"].as_str().ok_or_else(|| error("`url` is missing", false))?;
    let body = input.get("body").map(Value::to_string);
    let method = input["method"]
        .as_str()
        .unwrap_or(if body.is_some() { "POST" } else { "GET" });
    let mut request = Request::builder().method(method).uri(url);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.unwrap_or_default())
        .map_err(|e| error(format!("bad request: {e}"), false))?;
    let response = Client::new()
        .send(request)
        .await
        .map_err(|e| error(format!("{method} {url} failed: {e:?}"), true))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .contents()
        .await
        .map_err(|e| error(format!("reading the answer of {url} failed: {e:?}"), true))?
        .to_vec();
    if status >= 400 {
        return Err(error(format!("{method} {url} answered {status}"), status >= 500));
    }
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| error(format!("{url} did not answer JSON: {e}"), false))?;
    Ok(json!({ "status": status, "body": body }))
}

impl Guest for FetchJson {
    fn run(_ctx: Context, input: String) -> Result<String, StepError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| error(format!("input: {e}"), false))?;
        let output = wstd::runtime::block_on(fetch(&input))?;
        Ok(output.to_string())
    }
}

export!(FetchJson);
