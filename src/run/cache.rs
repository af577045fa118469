//! The step result cache: a step with `cache:` reuses a recorded successful
//! output when the same module digest ran on the same canonical input with
//! the same arguments, environment, grants, limits and engine. The key is a
//! SHA-256 over those; where entries live is the [`StepCache`] the executor
//! is given (the store's for a server, memory for a benchmark).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::grants::Grants;
use crate::limits::Limits;

/// What the key says about the engine: a new engine never reuses an old
/// engine's outputs.
pub const ENGINE: &str = concat!("sandstep ", env!("CARGO_PKG_VERSION"), " wasmtime 48.0.8");

/// A recorded output found for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheHit {
    pub output: Value,
    /// The run whose attempt produced it.
    pub run_id: String,
    /// When it expires (ms since the epoch), if it does.
    pub expires_ms: Option<u64>,
}

/// An output to record.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub key: String,
    /// The module's name as the step referred to it (`echo` of `echo:v1`).
    pub module: String,
    pub digest: String,
    pub output: Value,
    pub run_id: String,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where cache entries are kept.
pub trait StepCache: Send + Sync {
    /// The live entry of each key (`None`: a miss), in order.
    fn get_many<'a>(&'a self, keys: &'a [String], now_ms: u64) -> BoxFuture<'a, Result<Vec<Option<CacheHit>>, String>>;
    /// Records entries (replacing any of the same key).
    fn put_many(&self, entries: Vec<CacheEntry>) -> BoxFuture<'_, Result<(), String>>;
    /// Entries were removed from where they are kept (a clear): forget any
    /// copy held in memory.
    fn cleared(&self) {}
}

/// Hits and misses of one process, for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl CacheStats {
    pub fn count(&self, hits: u64, misses: u64) {
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
    }
}

/// The key of one attempt's result.
pub fn key(
    digest: &str,
    input: &Value,
    args: &[String],
    env: &[(String, String)],
    grants: &Grants,
    limits: &Limits,
) -> String {
    let mut env: Vec<&(String, String)> = env.iter().collect();
    env.sort();
    let mut hasher = Sha256::new();
    for part in [
        ENGINE.to_string(),
        digest.to_string(),
        canonical(input),
        serde_json::to_string(args).expect("strings serialize"),
        serde_json::to_string(&env).expect("strings serialize"),
        serde_json::to_string(grants).expect("grants serialize"),
        serde_json::to_string(limits).expect("limits serialize"),
    ] {
        // Length-prefixed, so no two different inputs hash the same bytes.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// JSON with object keys sorted and numbers normalized (`1.0` is `1`,
/// `1e2` is `100`), so equal values have one text.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    use std::fmt::Write as _;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (_, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                let _ = write!(out, "{}", f as i64);
            }
            (_, _, Some(f)) => out.push_str(&serde_json::Number::from_f64(f).map_or("null".into(), |n| n.to_string())),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(text) => write_string(text, out),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

/// A JSON string as serde_json writes it: as it is when nothing in it
/// needs escaping (the common case), else escaped by serde_json.
fn write_string(text: &str, out: &mut String) {
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("strings serialize"));
    }
}

/// Entries in memory (local runs without a store, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, CacheEntry>>,
}

impl StepCache for MemoryCache {
    fn get_many<'a>(&'a self, keys: &'a [String], now_ms: u64) -> BoxFuture<'a, Result<Vec<Option<CacheHit>>, String>> {
        let entries = self.entries.lock().expect("cache lock");
        let found = keys
            .iter()
            .map(|key| {
                entries
                    .get(key)
                    .filter(|e| e.expires_ms.is_none_or(|at| at > now_ms))
                    .map(|e| CacheHit {
                        output: e.output.clone(),
                        run_id: e.run_id.clone(),
                        expires_ms: e.expires_ms,
                    })
            })
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn put_many(&self, entries: Vec<CacheEntry>) -> BoxFuture<'_, Result<(), String>> {
        let mut held = self.entries.lock().expect("cache lock");
        for entry in entries {
            held.insert(entry.key.clone(), entry);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values_have_one_canonical_text() {
        let a = json!({ "b": [1.0, 2, { "y": 1e2, "x": "s" }], "a": null });
        let b: Value = serde_json::from_str(r#"{"a": null, "b": [1, 2.0, {"x": "s", "y": 100}]}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":null,"b":[1,2,{"x":"s","y":100}]}"#);
        assert_ne!(canonical(&json!(1.5)), canonical(&json!(1)));
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        // Stored cache keys and call digests were computed with serde_json's
        // escaping: the canonical text must not change.
        let value = json!({
            "quote\"d": "tab\there",
            "é": "snow ☃ \u{1} \u{7f} back\\slash",
            "plain": ["a", -3, 18446744073709551615u64, 0.25, true, false, null],
        });
        let text = |s: &str| serde_json::to_string(s).unwrap();
        let expected = format!(
            r#"{{"plain":["a",-3,18446744073709551615,0.25,true,false,null],{}:{},{}:{}}}"#,
            text("quote\"d"),
            text("tab\there"),
            text("é"),
            text("snow ☃ \u{1} \u{7f} back\\slash"),
        );
        assert_eq!(canonical(&value), expected);
        assert!(expected.contains(r#""tab\there""#) && expected.contains(r"\u0001"));
    }

    #[test]
    fn the_key_changes_with_each_part() {
        let (grants, limits) = (Grants::default(), Limits::default());
        let base = key("sha256:a", &json!({"x": 1}), &[], &[], &grants, &limits);
        assert_eq!(base, key("sha256:a", &json!({"x": 1.0}), &[], &[], &grants, &limits));
        assert_ne!(base, key("sha256:b", &json!({"x": 1}), &[], &[], &grants, &limits));
        assert_ne!(base, key("sha256:a", &json!({"x": 2}), &[], &[], &grants, &limits));
        assert_ne!(
            base,
            key("sha256:a", &json!({"x": 1}), &["-v".into()], &[], &grants, &limits)
        );
        let env = [("K".to_string(), "v".to_string())];
        assert_ne!(base, key("sha256:a", &json!({"x": 1}), &[], &env, &grants, &limits));
        let more = Limits {
            fuel: 1,
            ..Limits::default()
        };
        assert_ne!(base, key("sha256:a", &json!({"x": 1}), &[], &[], &grants, &more));
        let granted = Grants {
            scratch: Some(1),
            ..Grants::default()
        };
        assert_ne!(base, key("sha256:a", &json!({"x": 1}), &[], &[], &granted, &limits));
    }
}
