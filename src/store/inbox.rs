//! The per-run inbox: requests stored as rows, consumed by the run's owner
//! in the same transaction as the events they cause ([`super::runs`]).

use sqlx::Row as _;

use super::{now_ms, Db, StoreError};
use crate::run::inbox::{Message, MessageKind};

/// Why a message was not stored.
#[derive(Debug)]
pub enum Delivery {
    /// Stored with this id.
    Stored(i64),
    /// No such run.
    NoRun,
    /// The run has ended with this status.
    Ended(String),
}

impl Db {
    /// Stores `message` for an unfinished run, durably, before returning.
    pub async fn deliver(&self, run_id: &str, message: &MessageKind) -> Result<Delivery, StoreError> {
        let mut tx = self.write().await?;
        let status: Option<String> = sqlx::query("SELECT status FROM runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get("status"));
        let Some(status) = status else {
            return Ok(Delivery::NoRun);
        };
        if crate::run::RunStatus::parse(&status).is_some_and(crate::run::RunStatus::is_terminal) {
            return Ok(Delivery::Ended(status));
        }
        let body = serde_json::to_string(message).expect("a message serializes");
        let id: i64 =
            sqlx::query("INSERT INTO inbox (run_id, kind, body, created_ms) VALUES (?, ?, ?, ?) RETURNING id")
                .bind(run_id)
                .bind(message.name())
                .bind(body)
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await?
                .get("id");
        tx.commit().await?;
        Ok(Delivery::Stored(id))
    }

    /// The messages of a run not consumed yet, oldest first, after `after`.
    pub async fn pending_messages(&self, run_id: &str, after: i64) -> Result<Vec<Message>, StoreError> {
        let rows =
            sqlx::query("SELECT id, body FROM inbox WHERE run_id = ? AND consumed_ms IS NULL AND id > ? ORDER BY id")
                .bind(run_id)
                .bind(after)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.get("id");
                let body: &str = row.get("body");
                let kind = serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                    run_id: run_id.to_string(),
                    what: format!("inbox message {id}"),
                    message: e.to_string(),
                })?;
                Ok(Message { id, kind })
            })
            .collect()
    }
}
