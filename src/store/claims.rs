//! Who executes each unfinished run: claims, lease renewal and release.
//!
//! An unfinished run has an `owner` (a node id) and a fencing token `fence`
//! that every claim by a new holder increments ([`super::runs`] explains
//! why appends check it). The owner holds the run while its own lease
//! lasts: the `nodes` row its heartbeat renews ([`super::nodes`]), one row
//! per node however many runs it holds. A run whose owner has no live row
//! (it died, stalled past its lease, or stopped) is free to claim. Claims
//! are short transactions: nothing stays open while a step runs. On
//! PostgreSQL, nodes claiming at once skip each other's rows (`FOR UPDATE
//! SKIP LOCKED`); SQLite has one writer.

use sqlx::Row as _;

use super::runs::{run_row, Lease, RunRow, COLUMNS, UNFINISHED};
use super::sql::Sql;
use super::{now_ms, Db, Kind, StoreError};

/// A run's owner holds it: a node whose lease has not ended (`$N` is now).
fn held(now: &str) -> String {
    format!("owner IN (SELECT id FROM nodes WHERE lease_until_ms >= {now})")
}

/// Claimed runs with their leases, and how many were taken from another
/// node whose lease had ended.
pub type Claimed = (Vec<(RunRow, Lease)>, u64);

impl Db {
    /// Claims again the unfinished runs `node` owned before a restart: each
    /// one's fence moves on, so appends of the previous process are refused.
    pub async fn claim_own(&self, node: &str) -> Result<Claimed, StoreError> {
        let mut tx = self.write().await?;
        let rows = sqlx::query(&format!(
            "UPDATE runs SET fence = fence + 1 WHERE owner = $1 AND {UNFINISHED} RETURNING {COLUMNS}, fence"
        ))
        .bind(node)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((leases(node, &rows)?, 0))
    }

    /// Claims for `node` up to `limit` unfinished runs nobody holds: never
    /// owned (a start left for any node), released by a clean stop, or
    /// under a lease that ended (a node that died or stalled), oldest
    /// first. Each claimed run's fence moves on.
    pub async fn claim_free(&self, node: &str, limit: i64) -> Result<Claimed, StoreError> {
        if limit <= 0 {
            return Ok((Vec::new(), 0));
        }
        let mut tx = self.write().await?;
        let lock = match self.kind() {
            Kind::Postgres => " FOR UPDATE SKIP LOCKED",
            Kind::Sqlite => "",
        };
        let free = sqlx::query(&format!(
            "SELECT id, owner FROM runs WHERE {UNFINISHED} AND (owner IS NULL OR NOT {}) \
             ORDER BY id LIMIT $2{lock}",
            held("$1")
        ))
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if free.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let mut taken_over = 0;
        let mut ids = Vec::with_capacity(free.len());
        for row in &free {
            let owner: Option<String> = row.try_get("owner")?;
            taken_over += u64::from(owner.is_some_and(|owner| owner != node));
            ids.push(row.try_get::<String, _>("id")?);
        }
        let mut update = Sql::new(self.kind(), "UPDATE runs SET owner = ");
        update
            .bind(node)
            .push(", fence = fence + 1 WHERE id IN ")
            .list(&ids)
            .push(&format!(" RETURNING {COLUMNS}, fence"));
        let rows = update.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut claimed = leases(node, &rows)?;
        claimed.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok((claimed, taken_over))
    }

    /// Gives up every run `node` owns (a clean stop): another node, or this
    /// one after a restart, claims them at once.
    pub async fn release_runs(&self, node: &str) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let released = sqlx::query("UPDATE runs SET owner = NULL WHERE owner = $1")
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if released > 0 {
            super::notify::send(&mut tx, self.kind(), &[super::notify::Signal::Runs]).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    /// Claims one unfinished run for `node` if nobody else holds a live
    /// lease on it: the run, its lease, and whether it was taken from
    /// another node's expired lease. A run `node` holds already keeps its
    /// fence; one taken from nobody or from an expired lease moves it on.
    pub async fn claim_run(&self, run_id: &str, node: &str) -> Result<Option<(RunRow, Lease, bool)>, StoreError> {
        let mut tx = self.write().await?;
        let before: Option<Option<String>> = sqlx::query_scalar("SELECT owner FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?;
        let taken_over = before.flatten().is_some_and(|owner| owner != node);
        let row = sqlx::query(&format!(
            "UPDATE runs SET fence = CASE WHEN owner = $1 THEN fence ELSE fence + 1 END, owner = $1 \
             WHERE id = $2 AND {UNFINISHED} AND (owner IS NULL OR owner = $1 OR NOT {}) RETURNING {COLUMNS}, fence",
            held("$3")
        ))
        .bind(node)
        .bind(run_id)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|row| {
            let lease = Lease {
                node: node.to_string(),
                fence: row.try_get("fence")?,
            };
            Ok((run_row(&row)?, lease, taken_over))
        })
        .transpose()
    }
}

fn leases(node: &str, rows: &[super::backend::Row]) -> Result<Vec<(RunRow, Lease)>, StoreError> {
    rows.iter()
        .map(|row| {
            let lease = Lease {
                node: node.to_string(),
                fence: row.try_get("fence")?,
            };
            Ok((run_row(row)?, lease))
        })
        .collect()
}
