//! The step result cache on the store: what the executor is given in a
//! server (and in `sandstep run` with a data directory), and clearing it.

use super::{RunError, Service};
use crate::run::cache::{BoxFuture, CacheEntry, CacheHit, StepCache};
use crate::store::Db;

/// Longest `module` a clear names (a name is at most 128 characters, a
/// digest 71).
pub const MAX_MODULE_CHARS: usize = 200;

/// Cache entries in the store.
pub struct StoreCache(pub Db);

impl StepCache for StoreCache {
    fn get_many<'a>(&'a self, keys: &'a [String], now_ms: u64) -> BoxFuture<'a, Result<Vec<Option<CacheHit>>, String>> {
        Box::pin(async move { self.0.cache_get(keys, now_ms).await.map_err(|e| e.to_string()) })
    }

    fn put_many(&self, entries: Vec<CacheEntry>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.cache_put(&entries).await.map_err(|e| e.to_string()) })
    }
}

impl Service {
    /// Drops the cache entries of `module` (a name or a digest), or all;
    /// returns how many.
    pub async fn clear_cache(&self, module: Option<&str>) -> Result<u64, RunError> {
        if module.is_some_and(|m| m.is_empty() || m.chars().count() > MAX_MODULE_CHARS) {
            return Err(RunError::invalid(
                "module",
                format!("module must be a name or a sha256: digest of 1 to {MAX_MODULE_CHARS} characters"),
            ));
        }
        self.store(self.db.cache_clear(module).await)
    }
}
