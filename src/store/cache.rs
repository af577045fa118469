//! The step result cache's entries (`run::cache`): looked up by key in
//! batches, recorded in one transaction per batch, cleared by module.

use sqlx::Row as _;

use super::sql::Sql;
use super::{Db, StoreError};
use crate::run::cache::{CacheEntry, CacheHit};

/// Keys per lookup statement (SQLite's default limit is 32,766 variables).
const CHUNK: usize = 500;

impl Db {
    /// The live entry of each key, in order.
    pub async fn cache_get(&self, keys: &[String], now_ms: u64) -> Result<Vec<Option<CacheHit>>, StoreError> {
        let mut found = std::collections::HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let mut query = Sql::new(
                self.kind(),
                "SELECT key, output, run_id, expires_ms FROM step_cache WHERE key IN ",
            );
            query.list(chunk).push(" AND (expires_ms IS NULL OR expires_ms > ");
            query.bind(now_ms as i64).push(")");
            for row in query.build().fetch_all(&self.pool).await? {
                let key: String = row.get("key");
                let output: String = row.get("output");
                let output = serde_json::from_str(&output).map_err(|e| StoreError::Corrupt {
                    run_id: row.get("run_id"),
                    what: format!("cached output {key}"),
                    message: e.to_string(),
                })?;
                found.insert(
                    key,
                    CacheHit {
                        output,
                        run_id: row.get("run_id"),
                        expires_ms: row.get::<Option<i64>, _>("expires_ms").map(|at| at as u64),
                    },
                );
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    /// Records entries, replacing any of the same key.
    pub async fn cache_put(&self, entries: &[CacheEntry]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for entry in entries {
            sqlx::query(
                "INSERT INTO step_cache (key, module, digest, output, run_id, created_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO UPDATE SET output = excluded.output, \
                 run_id = excluded.run_id, created_ms = excluded.created_ms, expires_ms = excluded.expires_ms",
            )
            .bind(&entry.key)
            .bind(&entry.module)
            .bind(&entry.digest)
            .bind(entry.output.to_string())
            .bind(&entry.run_id)
            .bind(entry.created_ms as i64)
            .bind(entry.expires_ms.map(|at| at as i64))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes the entries of a module (a name or a `sha256:` digest), or
    /// every entry; returns how many.
    pub async fn cache_clear(&self, module: Option<&str>) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let done = match module {
            Some(module) => {
                sqlx::query("DELETE FROM step_cache WHERE module = $1 OR digest = $2")
                    .bind(module)
                    .bind(module)
                    .execute(&mut *tx)
                    .await?
            }
            None => sqlx::query("DELETE FROM step_cache").execute(&mut *tx).await?,
        };
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
