//! The per-run inbox: requests stored as rows, consumed by the run's owner
//! in the same transaction as the events they cause ([`super::runs`]).

use sqlx::Row as _;

use super::{now_ms, Db, StoreError};
use crate::run::inbox::{Message, MessageKind, PostedEvent};

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
        let status: Option<String> = sqlx::query("SELECT status FROM runs WHERE id = $1")
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
            sqlx::query("INSERT INTO inbox (run_id, kind, body, created_ms) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(run_id)
                .bind(message.name())
                .bind(body)
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await?
                .get("id");
        let signal = super::notify::Signal::Inbox(run_id.to_string());
        super::notify::send(&mut tx, self.kind(), &[signal]).await?;
        tx.commit().await?;
        Ok(Delivery::Stored(id))
    }

    /// The unfinished runs `node` owns with messages not consumed yet.
    pub async fn runs_with_messages(&self, node: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT i.run_id FROM inbox i JOIN runs r ON r.id = i.run_id \
             WHERE i.consumed_ms IS NULL AND r.owner = $1",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get("run_id")).collect())
    }

    /// Whether inbox message `id` no longer waits for its run's owner: it
    /// was consumed, or its run ended (an ended run reads no more
    /// messages) or is gone.
    pub async fn message_settled(&self, id: i64) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT i.consumed_ms, r.status FROM inbox i JOIN runs r ON r.id = i.run_id WHERE i.id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_none_or(|r| {
            r.get::<Option<i64>, _>("consumed_ms").is_some()
                || crate::run::RunStatus::parse(r.get("status")).is_some_and(crate::run::RunStatus::is_terminal)
        }))
    }

    /// The messages of a run not consumed yet, oldest first.
    /// An event message carries the event it names.
    pub async fn pending_messages(&self, run_id: &str) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(super::events::PENDING_WITH_EVENTS)
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        let corrupt = |id: i64, message: String| StoreError::Corrupt {
            run_id: run_id.to_string(),
            what: format!("inbox message {id}"),
            message,
        };
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.get("id");
            let event_id: Option<String> = row.get("event_id");
            let child_id: Option<String> = row.get("child_id");
            let kind = match (event_id, child_id) {
                (_, Some(child)) => {
                    let status: Option<String> = row.get("child_status");
                    let output: Option<String> = row.get("child_output");
                    let Some(status) = status else {
                        return Err(corrupt(id, format!("its child run {child} is gone")));
                    };
                    let output = output
                        .map(|o| serde_json::from_str(&o))
                        .transpose()
                        .map_err(|e| corrupt(id, e.to_string()))?;
                    MessageKind::ChildEnded {
                        child,
                        status,
                        output,
                        error: row.get("child_error"),
                    }
                }
                (Some(event_id), None) => {
                    let topic: Option<String> = row.get("topic");
                    let data: Option<String> = row.get("data");
                    let (Some(topic), Some(data)) = (topic, data) else {
                        return Err(corrupt(id, format!("its event {event_id} is gone")));
                    };
                    MessageKind::Event {
                        event: PostedEvent {
                            id: event_id,
                            topic,
                            data: serde_json::from_str(&data).map_err(|e| corrupt(id, e.to_string()))?,
                            posted_ms: row.get::<i64, _>("created_ms") as u64,
                            traceparent: row.get("traceparent"),
                        },
                    }
                }
                (None, None) => serde_json::from_str(row.get("body")).map_err(|e| corrupt(id, e.to_string()))?,
            };
            messages.push(Message { id, kind });
        }
        Ok(messages)
    }
}
