//! Chains and keys in the store: a run's events as stored, byte for byte,
//! with their hashes (to check the chain, to bundle), and the public keys
//! nodes sign receipts with.

use serde::Serialize;
use sqlx::Row as _;

use super::{Db, StoreError};

/// One event as its row holds it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub body: String,
    pub hash: Option<String>,
}

/// A node's receipt key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeKey {
    /// `sha256:` and the hex SHA-256 of the raw public key.
    pub keyid: String,
    pub node: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// The raw 32-byte public key, hex.
    pub public_key: String,
    pub created_ms: i64,
}

impl Db {
    /// Every event of `run_id` as stored, in order.
    pub async fn stored_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query("SELECT seq, body, hash FROM events WHERE run_id = $1 ORDER BY seq")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    seq: row.try_get::<i64, _>("seq")? as u64,
                    body: row.try_get("body")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Records this node's public key (once per key).
    pub async fn put_node_key(&self, node: &str, keyid: &str, public_key: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO node_keys (keyid, node, public_key, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (keyid) DO NOTHING",
        )
        .bind(keyid)
        .bind(node)
        .bind(public_key)
        .bind(super::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every node key ever recorded, oldest first.
    pub async fn node_keys(&self) -> Result<Vec<NodeKey>, StoreError> {
        let rows = sqlx::query("SELECT keyid, node, public_key, created_ms FROM node_keys ORDER BY created_ms, keyid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(NodeKey {
                    keyid: row.try_get("keyid")?,
                    node: row.try_get("node")?,
                    algorithm: "ed25519".into(),
                    public_key: row.try_get("public_key")?,
                    created_ms: row.try_get("created_ms")?,
                })
            })
            .collect()
    }
}
