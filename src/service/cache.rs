//! The step result cache on the store: what the executor is given in a
//! server (and in `sandstep run` with a data directory), and clearing it.
//!
//! On SQLite, where this process is the store's only writer while it
//! serves (`sandstep cache clear` without a server refuses while one is
//! live), the entries it records or finds are also held in memory
//! ([`View`]), so a hit costs no read; a clear forgets them once the rows
//! are gone. On PostgreSQL another node may clear at any time, so every
//! lookup reads the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use super::{RunError, Service};
use crate::run::cache::{BoxFuture, CacheEntry, CacheHit, StepCache};
use crate::store::{Db, Kind};

/// Longest `module` a clear names (a name is at most 128 characters, a
/// digest 71).
pub const MAX_MODULE_CHARS: usize = 200;

/// Most bytes of outputs held in memory (about: see [`approx_size`]); the
/// oldest entries go first.
const VIEW_BYTES: usize = 32 << 20;
/// Outputs larger than this are read from the store each time.
const VIEW_ENTRY_BYTES: usize = 1 << 20;

/// Cache entries in the store.
pub struct StoreCache {
    db: Db,
    /// None: every lookup reads the store (PostgreSQL).
    view: Option<Mutex<View>>,
}

impl StoreCache {
    pub fn new(db: Db) -> Self {
        let view = (db.kind() == Kind::Sqlite).then(|| Mutex::new(View::default()));
        StoreCache { db, view }
    }

    fn generation(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| v.lock().unwrap().generation)
    }
}

impl StepCache for StoreCache {
    fn get_many<'a>(&'a self, keys: &'a [String], now_ms: u64) -> BoxFuture<'a, Result<Vec<Option<CacheHit>>, String>> {
        Box::pin(async move {
            let Some(view) = &self.view else {
                return self.db.cache_get(keys, now_ms).await.map_err(|e| e.to_string());
            };
            let (mut found, generation) = {
                let view = view.lock().unwrap();
                (
                    keys.iter().map(|k| view.get(k, now_ms)).collect::<Vec<_>>(),
                    view.generation,
                )
            };
            let missing: Vec<String> = keys
                .iter()
                .zip(&found)
                .filter(|(_, hit)| hit.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            if missing.is_empty() {
                return Ok(found);
            }
            let read = self.db.cache_get(&missing, now_ms).await.map_err(|e| e.to_string())?;
            let mut read: HashMap<String, CacheHit> = missing
                .into_iter()
                .zip(read)
                .filter_map(|(k, hit)| hit.map(|h| (k, h)))
                .collect();
            // Held only if no clear came between the read and now.
            let mut view = view.lock().unwrap();
            for (key, slot) in keys.iter().zip(found.iter_mut()) {
                if slot.is_none() {
                    if let Some(hit) = read.remove(key) {
                        view.hold(generation, key, &hit);
                        *slot = Some(hit);
                    }
                }
            }
            Ok(found)
        })
    }

    fn put_many(&self, entries: Vec<CacheEntry>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let generation = self.generation();
            self.db.cache_put(&entries).await.map_err(|e| e.to_string())?;
            if let Some(view) = &self.view {
                let mut view = view.lock().unwrap();
                for entry in entries {
                    let hit = CacheHit {
                        output: entry.output,
                        run_id: entry.run_id,
                        expires_ms: entry.expires_ms,
                    };
                    view.hold(generation, &entry.key, &hit);
                }
            }
            Ok(())
        })
    }

    fn cleared(&self) {
        if let Some(view) = &self.view {
            view.lock().unwrap().clear();
        }
    }
}

/// Entries held in memory, oldest first out.
#[derive(Default)]
struct View {
    entries: HashMap<String, Held>,
    /// Keys in the order they were held, with the sequence number each was
    /// held under (an entry held again leaves its older place stale).
    order: VecDeque<(u64, String)>,
    bytes: usize,
    sequence: u64,
    /// Counts clears: an entry read or recorded before a clear is not held
    /// after it.
    generation: u64,
}

struct Held {
    hit: CacheHit,
    size: usize,
    sequence: u64,
}

impl View {
    fn get(&self, key: &str, now_ms: u64) -> Option<CacheHit> {
        let held = self.entries.get(key)?;
        if held.hit.expires_ms.is_some_and(|at| at <= now_ms) {
            return None;
        }
        Some(held.hit.clone())
    }

    /// Holds `hit` under `key`, unless a clear came after `generation`.
    fn hold(&mut self, generation: u64, key: &str, hit: &CacheHit) {
        if generation != self.generation {
            return;
        }
        let size = approx_size(&hit.output) + key.len() + hit.run_id.len();
        if size > VIEW_ENTRY_BYTES {
            if let Some(old) = self.entries.remove(key) {
                self.bytes -= old.size;
            }
            return;
        }
        self.sequence += 1;
        let held = Held {
            hit: hit.clone(),
            size,
            sequence: self.sequence,
        };
        if let Some(old) = self.entries.insert(key.to_string(), held) {
            self.bytes -= old.size;
        }
        self.bytes += size;
        self.order.push_back((self.sequence, key.to_string()));
        while self.bytes > VIEW_BYTES {
            let Some((sequence, key)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|h| h.sequence == sequence) {
                let old = self.entries.remove(&key).expect("checked above");
                self.bytes -= old.size;
            }
        }
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order
                .retain(|(sequence, key)| entries.get(key).is_some_and(|h| h.sequence == *sequence));
        }
    }

    fn clear(&mut self) {
        self.generation += 1;
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

/// About how many bytes `value` takes as JSON.
fn approx_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(approx_size).sum::<usize>(),
        Value::Object(map) => 2 + map.iter().map(|(k, v)| k.len() + 4 + approx_size(v)).sum::<usize>(),
    }
}

impl Service {
    /// Drops the cache entries of `module` (a name or a digest), or all;
    /// returns how many. Copies held in memory are forgotten once the rows
    /// are gone.
    pub async fn clear_cache(&self, module: Option<&str>) -> Result<u64, RunError> {
        if module.is_some_and(|m| m.is_empty() || m.chars().count() > MAX_MODULE_CHARS) {
            return Err(RunError::invalid(
                "module",
                format!("module must be a name or a sha256: digest of 1 to {MAX_MODULE_CHARS} characters"),
            ));
        }
        let cleared = self.store(self.db.cache_clear(module).await);
        if let Some(cache) = self.executor.cache() {
            cache.cleared();
        }
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hit(output: Value, expires_ms: Option<u64>) -> CacheHit {
        CacheHit {
            output,
            run_id: "r".into(),
            expires_ms,
        }
    }

    #[test]
    fn a_held_entry_is_found_until_it_expires() {
        let mut view = View::default();
        view.hold(0, "k", &hit(json!({ "n": 1 }), Some(2_000)));
        assert_eq!(view.get("k", 1_999).map(|h| h.output), Some(json!({ "n": 1 })));
        assert_eq!(view.get("k", 2_000), None);
        assert_eq!(view.get("other", 0), None);
    }

    #[test]
    fn a_clear_forgets_entries_and_refuses_what_was_read_before_it() {
        let mut view = View::default();
        view.hold(0, "k", &hit(json!(1), None));
        let before = view.generation;
        view.clear();
        assert_eq!(view.get("k", 0), None);
        // A lookup that read the store before the clear holds nothing.
        view.hold(before, "k", &hit(json!(1), None));
        assert_eq!(view.get("k", 0), None);
        view.hold(view.generation, "k", &hit(json!(2), None));
        assert_eq!(view.get("k", 0).map(|h| h.output), Some(json!(2)));
    }

    #[test]
    fn the_oldest_entries_go_first_and_large_outputs_are_not_held() {
        let mut view = View::default();
        let big = "x".repeat(VIEW_ENTRY_BYTES / 2);
        let keys: Vec<String> = (0..(2 * VIEW_BYTES / big.len() + 2)).map(|i| format!("k{i}")).collect();
        for key in &keys {
            view.hold(0, key, &hit(json!(big), None));
        }
        assert!(view.bytes <= VIEW_BYTES, "{} bytes held", view.bytes);
        assert_eq!(view.get("k0", 0), None, "the oldest entry went first");
        assert!(view.get(keys.last().unwrap(), 0).is_some(), "the newest is held");
        // Held again, an entry moves to the back and its old place is stale.
        let kept = keys.last().unwrap().clone();
        for _ in 0..3000 {
            view.hold(0, &kept, &hit(json!(1), None));
        }
        assert!(
            view.order.len() <= 2 * view.entries.len() + 1025,
            "{}",
            view.order.len()
        );
        view.hold(0, "huge", &hit(json!("x".repeat(VIEW_ENTRY_BYTES + 1)), None));
        assert_eq!(view.get("huge", 0), None);
    }
}
