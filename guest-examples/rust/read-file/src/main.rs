//! `read-file`: a command (wasm32-wasip2) that reads a file from a directory
//! its step is granted, with plain `std::fs`.
//!
//! stdin `{"path": "/config/settings.json"}` → stdout
//! `{"path", "bytes", "json"}` (or `"text"` when the file is not JSON).
//! The step grants the directory: `grants: { files: { read: [config] } }`,
//! and the server exposes it: `sandstep serve --allow-read config=/etc/myapp`.

use std::io::Read;

use serde_json::{json, Value};

fn main() {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        fail(&format!("cannot read the input: {e}"));
    }
    let input: Value = serde_json::from_str(&input).unwrap_or_else(|e| fail(&format!("input: {e}")));
    let Some(path) = input["path"].as_str() else {
        fail("`path` is missing");
    };
    let bytes = std::fs::read(path).unwrap_or_else(|e| fail(&format!("cannot read {path}: {e}")));
    let mut output = json!({ "path": path, "bytes": bytes.len() });
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => output["json"] = value,
        Err(_) => output["text"] = Value::String(String::from_utf8_lossy(&bytes).into_owned()),
    }
    println!("{output}");
}

/// Reports a non-retryable error the way Sandstep reads it, and exits 1.
fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": { "message": message, "retryable": false } }));
    std::process::exit(1)
}
