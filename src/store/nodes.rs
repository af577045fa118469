//! The nodes serving this store (migration 0010): a row per node, kept
//! alive by its heartbeat, deleted by a clean stop. A node's lease is its
//! row's `lease_until_ms`: it holds its runs while the lease lasts
//! ([`super::claims`]).

use sqlx::Row as _;

use super::runs::UNFINISHED;
use super::{Db, StoreError};

/// A live node as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    pub listen: Option<String>,
    pub last_seen_ms: i64,
    /// Unfinished runs it holds under a live lease.
    pub runs_owned: i64,
}

impl Db {
    /// Records `node` alive now and until `lease_until_ms`, and where it
    /// listens when given (kept otherwise).
    pub async fn node_seen(&self, node: &str, listen: Option<&str>, lease_until_ms: i64) -> Result<(), StoreError> {
        let now = super::now_ms();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO nodes (id, listen, started_ms, last_seen_ms, lease_until_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET listen = COALESCE(excluded.listen, nodes.listen), \
             last_seen_ms = excluded.last_seen_ms, lease_until_ms = excluded.lease_until_ms",
        )
        .bind(node)
        .bind(listen)
        .bind(now)
        .bind(now)
        .bind(lease_until_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets `node` (a clean stop).
    pub async fn node_gone(&self, node: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The nodes whose lease has not ended, by id.
    pub async fn live_nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let now = super::now_ms();
        let rows = sqlx::query(&format!(
            "SELECT n.id, n.listen, n.last_seen_ms, (SELECT COUNT(*) FROM runs WHERE owner = n.id \
             AND {UNFINISHED}) AS runs_owned FROM nodes n WHERE n.lease_until_ms >= $1 ORDER BY n.id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NodeRow {
                    id: row.try_get("id")?,
                    listen: row.try_get("listen")?,
                    last_seen_ms: row.try_get("last_seen_ms")?,
                    runs_owned: row.try_get("runs_owned")?,
                })
            })
            .collect()
    }

    /// Unfinished runs `node` holds under a live lease.
    pub async fn runs_owned(&self, node: &str) -> Result<i64, StoreError> {
        let count = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM runs WHERE owner = $1 AND {UNFINISHED} \
             AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND lease_until_ms >= $2)"
        ))
        .bind(node)
        .bind(super::now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }
}
