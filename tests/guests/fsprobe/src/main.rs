//! A command that tries the file operations its input lists, in order,
//! with Rust's std (wasi:filesystem underneath), and prints each result:
//! `{"ops": [{"op": "read", "path": "/data/a.txt"},
//!           {"op": "write", "path": "/scratch/x", "bytes": 1000},
//!           {"op": "list", "path": "/data"}, {"op": "env", "name": "K"}]}`
//! -> `{"results": [{"ok": "..."} | {"error": "..."}]}`.

use std::io::{Read, Write};

use serde_json::{json, Value};

fn op(op: &Value) -> Result<Value, String> {
    let path = op["path"].as_str().unwrap_or("");
    match op["op"].as_str().unwrap_or("") {
        "read" => std::fs::read_to_string(path).map(Value::String).map_err(|e| e.to_string()),
        "write" => {
            let bytes = op["bytes"].as_u64().unwrap_or(0) as usize;
            let mut file = std::fs::File::create(path).map_err(|e| e.to_string())?;
            let chunk = vec![b'x'; 64 << 10];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                file.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
                left -= n;
            }
            file.flush().map_err(|e| e.to_string())?;
            let mut back = String::new();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut back))
                .map_err(|e| e.to_string())?;
            Ok(json!(back.len()))
        }
        "list" => {
            let mut names: Vec<String> = std::fs::read_dir(path)
                .map_err(|e| e.to_string())?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            names.sort();
            Ok(json!(names))
        }
        "env" => std::env::var(op["name"].as_str().unwrap_or(""))
            .map(Value::String)
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown op {other:?}")),
    }
}

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
    let results: Vec<Value> = input["ops"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| match op(o) {
            Ok(ok) => json!({ "ok": ok }),
            Err(error) => json!({ "error": error }),
        })
        .collect();
    println!("{}", json!({ "results": results }));
}
