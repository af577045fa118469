//! `throttle:` books in the store (migration 0009): asks are answered in the
//! group-commit writer's transaction, so two asks never see the same free
//! slot, and the books outlive the process.

use std::collections::HashMap;

use sqlx::Row as _;

use super::backend::Connection;
use super::sql::Sql;
use super::{Kind, StoreError};
use crate::run::throttle::{decide, Answer, Ask, Book};

/// Rows per multi-row statement.
const CHUNK: usize = 200;

/// A rate-limited start granted outside the store: `(scope, key, at_ms,
/// per_ms)`; recording it forgets the key's starts older than its window.
pub type Start = (String, String, u64, u64);

/// Answers `asks` in order and records the grants. On PostgreSQL, nodes
/// asking about the same key at once take turns: each key's books are read
/// under a transaction lock on the key, taken in key order.
pub(crate) async fn acquire(
    tx: &mut Connection,
    kind: Kind,
    asks: &[Ask],
    now_ms: u64,
) -> Result<Vec<Answer>, StoreError> {
    // The books of every key asked about, with the widest window asked for.
    let mut windows: HashMap<(String, String), Option<u64>> = HashMap::new();
    for claim in asks.iter().flat_map(|a| &a.claims) {
        let per = claim.rate.map(|(_, per)| per);
        let window = windows.entry((claim.scope.clone(), claim.key.clone())).or_insert(per);
        *window = (*window).max(per);
    }
    if kind == Kind::Postgres {
        let mut keys: Vec<String> = windows.keys().map(|(scope, key)| format!("{scope}\n{key}")).collect();
        keys.sort();
        for key in keys {
            sqlx::query("SELECT COUNT(pg_advisory_xact_lock(hashtext($1)))")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
    }
    let mut books: HashMap<(String, String), Book> = HashMap::with_capacity(windows.len());
    for ((scope, key), per) in &windows {
        let mut book = Book::default();
        let holders = sqlx::query("SELECT holder FROM throttle_holds WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_all(&mut *tx)
            .await?;
        for row in holders {
            book.holders.insert(row.try_get("holder")?);
        }
        if let Some(per) = per {
            forget_starts(tx, scope, key, now_ms.saturating_sub(*per)).await?;
            let starts = sqlx::query("SELECT at_ms FROM throttle_starts WHERE scope = $1 AND key = $2 ORDER BY at_ms")
                .bind(scope)
                .bind(key)
                .fetch_all(&mut *tx)
                .await?;
            for row in starts {
                book.starts.push(row.try_get::<i64, _>("at_ms")? as u64);
            }
        }
        books.insert((scope.clone(), key.clone()), book);
    }
    let (answers, granted) = decide(&mut books, asks, now_ms);
    for chunk in granted.holds.chunks(CHUNK) {
        let mut query = Sql::new(
            Kind::of(tx),
            "INSERT INTO throttle_holds (scope, key, holder, run_id, since_ms) ",
        );
        query.values(chunk, |row, (scope, key, holder, run_id)| {
            row.bind(scope).bind(key).bind(holder).bind(run_id).bind(now_ms as i64);
        });
        query.push(" ON CONFLICT (scope, key, holder) DO NOTHING");
        query.build().execute(&mut *tx).await?;
    }
    let starts: Vec<(&str, &str, u64)> = granted
        .starts
        .iter()
        .map(|(scope, key, at)| (scope.as_str(), key.as_str(), *at))
        .collect();
    insert_starts(tx, &starts).await?;
    Ok(answers)
}

/// Forgets a key's starts at or before `since_ms` (out of its window).
async fn forget_starts(tx: &mut Connection, scope: &str, key: &str, since_ms: u64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM throttle_starts WHERE scope = $1 AND key = $2 AND at_ms <= $3")
        .bind(scope)
        .bind(key)
        .bind(since_ms as i64)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Records starts `(scope, key, at_ms)`.
async fn insert_starts(tx: &mut Connection, starts: &[(&str, &str, u64)]) -> Result<(), StoreError> {
    for chunk in starts.chunks(CHUNK) {
        let mut query = Sql::new(Kind::of(tx), "INSERT INTO throttle_starts (scope, key, at_ms) ");
        query.values(chunk, |row, (scope, key, at)| {
            row.bind(*scope).bind(*key).bind(*at as i64);
        });
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Gives back every slot of these holders.
pub(crate) async fn release(tx: &mut Connection, holders: &[String]) -> Result<(), StoreError> {
    for chunk in holders.chunks(CHUNK) {
        let mut query = Sql::new(Kind::of(tx), "DELETE FROM throttle_holds WHERE holder IN ");
        query.list(chunk);
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Gives back every slot the units of these runs hold.
pub(crate) async fn release_runs(tx: &mut Connection, runs: &[&str]) -> Result<(), StoreError> {
    for chunk in runs.chunks(CHUNK) {
        let mut query = Sql::new(Kind::of(tx), "DELETE FROM throttle_holds WHERE run_id IN ");
        query.list(chunk.iter().copied());
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Records starts granted outside the store, and forgets each key's starts
/// that left its window.
pub(crate) async fn record_starts(tx: &mut Connection, starts: &[Start]) -> Result<(), StoreError> {
    if starts.is_empty() {
        return Ok(());
    }
    let mut oldest: HashMap<(&str, &str), u64> = HashMap::new();
    for (scope, key, at, per) in starts {
        let since = at.saturating_sub(*per);
        let entry = oldest.entry((scope.as_str(), key.as_str())).or_insert(since);
        *entry = (*entry).min(since);
    }
    for ((scope, key), since) in oldest {
        forget_starts(tx, scope, key, since).await?;
    }
    let starts: Vec<(&str, &str, u64)> = starts
        .iter()
        .map(|(scope, key, at, _)| (scope.as_str(), key.as_str(), *at))
        .collect();
    insert_starts(tx, &starts).await
}

impl super::Db {
    /// A key's recorded starts after `since_ms`, ascending.
    pub async fn throttle_starts(&self, scope: &str, key: &str, since_ms: u64) -> Result<Vec<u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms FROM throttle_starts WHERE scope = $1 AND key = $2 AND at_ms > $3 ORDER BY at_ms",
        )
        .bind(scope)
        .bind(key)
        .bind(since_ms as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<i64, _>("at_ms")? as u64))
            .collect()
    }
}
