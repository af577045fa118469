//! Makes the HTTP requests its input lists, in order, with `wstd` (the
//! usual Rust client on wasi:http), and reports each one's status and
//! body, or the error the host answered:
//! `{"requests": [{"url": "...", "method": "POST", "body": "...", "headers": {"name": "value"}}]}` ->
//! `{"results": [{"status": 200, "body": "..."} | {"error": "..."}]}`.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

use serde_json::{json, Value};
use wstd::http::{Client, Request};

struct HttpProbe;

async fn one(request: &Value) -> Result<Value, String> {
    let url = request["url"].as_str().ok_or("url missing")?;
    let method = request["method"].as_str().unwrap_or("GET");
    let body = request["body"].as_str().unwrap_or("").to_string();
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(headers) = request["headers"].as_object() {
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str().unwrap_or_default());
        }
    }
    let request = builder.body(body).map_err(|e| e.to_string())?;
    let response = Client::new().send(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .contents()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_vec();
    Ok(json!({ "status": status, "body": String::from_utf8_lossy(&bytes) }))
}

impl Guest for HttpProbe {
    fn run(_ctx: Context, input: String) -> Result<String, StepError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| StepError {
            message: e.to_string(),
            retryable: false,
        })?;
        let requests = input["requests"].as_array().cloned().unwrap_or_default();
        let results = wstd::runtime::block_on(async {
            let mut results = Vec::new();
            for request in &requests {
                results.push(match one(request).await {
                    Ok(result) => result,
                    Err(error) => json!({ "error": error }),
                });
            }
            results
        });
        Ok(json!({ "results": results }).to_string())
    }
}

export!(HttpProbe);
