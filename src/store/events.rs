//! Posted events (`POST /v1/events`) and the waits they resume: an event
//! is stored with an inbox message for every run with a step waiting for
//! its topic, in one transaction; a wait that starts later finds the events
//! of its topic posted since its run was queued ([`follow_waits`], in the
//! transaction of the `step.waiting` event). Either way the run's owner gets
//! each event exactly through its inbox.

use std::collections::HashMap;

use sqlx::Row as _;

use super::backend::Connection;
use super::sql::Sql;
use super::{now_ms, Db, StoreError};
use crate::run::{ErrorKind, Event, EventKind};

/// The stored body of an event message: its data is read from the event.
const EVENT_MESSAGE: &str = r#"{"kind":"event"}"#;

/// An event as stored and listed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: String,
    pub topic: String,
    #[schema(schema_with = crate::server::posted::any_json)]
    pub data: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub created_ms: i64,
    /// Runs whose wait this event ended.
    pub resumed: Vec<String>,
    /// Runs this event started (`on_event` triggers).
    pub started: Vec<String>,
    /// The listing cursor of this event.
    #[serde(skip)]
    pub seq: i64,
}

/// What posting an event did.
#[derive(Debug, Clone)]
pub struct Posted {
    pub id: String,
    /// `false` when an event with the same idempotency key answered.
    pub created: bool,
    /// Runs given an inbox message for it (to wake).
    pub runs: Vec<String>,
}

impl Db {
    /// Events newest first, of one topic or all, older than the cursor
    /// `before` (a previous page's last `seq`); `limit` rows at most.
    pub async fn list_posted_events(
        &self,
        topic: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut query = Sql::new(
            self.kind(),
            "SELECT seq, id, topic, data, idempotency_key, created_ms FROM posted_events WHERE 1 = 1",
        );
        if let Some(topic) = topic {
            query.push(" AND topic = ").bind(topic);
        }
        if let Some(before) = before {
            query.push(" AND seq < ").bind(before);
        }
        query.push(" ORDER BY seq DESC LIMIT ").bind(limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let data: String = row.try_get("data")?;
            let data = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
                run_id: String::new(),
                what: format!("event {id}"),
                message: e.to_string(),
            })?;
            events.push(StoredEvent {
                seq: row.try_get("seq")?,
                topic: row.try_get("topic")?,
                idempotency_key: row.try_get("idempotency_key")?,
                created_ms: row.try_get("created_ms")?,
                data,
                resumed: Vec::new(),
                started: Vec::new(),
                id,
            });
        }
        if !events.is_empty() {
            let mut query = Sql::new(
                self.kind(),
                "SELECT event_id, run_id, role FROM event_runs WHERE event_id IN ",
            );
            query
                .list(events.iter().map(|e| e.id.as_str()))
                .push(" ORDER BY run_id");
            let mut links: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
            for row in query.build().fetch_all(&self.pool).await? {
                let entry = links.entry(row.try_get("event_id")?).or_default();
                let run: String = row.try_get("run_id")?;
                match row.try_get::<&str, _>("role")? {
                    "resumed" => entry.0.push(run),
                    _ => entry.1.push(run),
                }
            }
            for event in &mut events {
                if let Some((resumed, started)) = links.remove(&event.id) {
                    event.resumed = resumed;
                    event.started = started;
                }
            }
        }
        Ok(events)
    }

    /// Deletes events past their retention that no unread message names.
    pub async fn purge_posted_events(&self) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let purged = sqlx::query(
            "DELETE FROM posted_events WHERE expires_ms < $1 AND id NOT IN \
             (SELECT event_id FROM inbox WHERE consumed_ms IS NULL AND event_id IS NOT NULL)",
        )
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }
}

/// An event to post (through the group-commit writer).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub topic: String,
    pub data: serde_json::Value,
    pub idempotency_key: Option<String>,
    /// How long it is kept (and found by waits that start later).
    pub retention_ms: i64,
    /// The W3C `traceparent` it was posted with.
    pub traceparent: Option<String>,
}

/// Stores an event (once per idempotency key) and an inbox message for
/// every run waiting for its topic, inside the writer's transaction.
pub(super) async fn insert_event(tx: &mut Connection, event: &NewEvent) -> Result<Posted, StoreError> {
    if let Some(key) = &event.idempotency_key {
        let existing = sqlx::query("SELECT id FROM posted_events WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            return Ok(Posted {
                id: row.try_get("id")?,
                created: false,
                runs: Vec::new(),
            });
        }
    }
    let id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let now = now_ms();
    sqlx::query(
        "INSERT INTO posted_events (id, topic, data, idempotency_key, created_ms, expires_ms, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&event.topic)
    .bind(event.data.to_string())
    .bind(event.idempotency_key.as_deref())
    .bind(now)
    .bind(now.saturating_add(event.retention_ms))
    .bind(event.traceparent.as_deref())
    .execute(&mut *tx)
    .await?;
    let runs: Vec<String> = sqlx::query(
        "INSERT INTO inbox (run_id, kind, body, created_ms, event_id) \
         SELECT DISTINCT run_id, 'event', $1, $2, $3 FROM waits WHERE topic = $4 RETURNING run_id",
    )
    .bind(EVENT_MESSAGE)
    .bind(now)
    .bind(&id)
    .bind(&event.topic)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| row.get("run_id"))
    .collect();
    Ok(Posted {
        id,
        created: true,
        runs,
    })
}

/// Keeps `waits` in step with appended events: a wait that starts is
/// registered and handed the events of its topic posted since its run was
/// queued (not expired); one that ends is removed, and the event that ended
/// it remembers the run.
pub(super) async fn follow_waits(tx: &mut Connection, events: &[&Event], now: i64) -> Result<(), StoreError> {
    for event in events {
        let run = event.run_id.as_str();
        match &event.kind {
            EventKind::StepWaiting {
                step,
                event: Some(topic),
                ..
            } => {
                sqlx::query(
                    "INSERT INTO waits (run_id, step, topic) VALUES ($1, $2, $3) \
                     ON CONFLICT (run_id, step) DO UPDATE SET topic = excluded.topic",
                )
                .bind(run)
                .bind(step)
                .bind(topic)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO inbox (run_id, kind, body, created_ms, event_id) \
                     SELECT $1, 'event', $2, $3, id FROM posted_events WHERE topic = $4 AND expires_ms > $5 \
                     AND created_ms >= (SELECT created_ms FROM runs WHERE id = $6) ORDER BY seq",
                )
                .bind(run)
                .bind(EVENT_MESSAGE)
                .bind(now)
                .bind(topic)
                .bind(now)
                .bind(run)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::StepSucceeded {
                step, event: Some(id), ..
            } => {
                end_wait(tx, run, step).await?;
                sqlx::query(
                    "INSERT INTO event_runs (event_id, run_id, role) VALUES ($1, $2, 'resumed') \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(run)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::StepFailed { step, error, .. } if error.kind == ErrorKind::WaitTimeout => {
                end_wait(tx, run, step).await?;
            }
            // A run that stops or is canceled cancels its waiting steps.
            EventKind::StepCanceled { step, .. } => end_wait(tx, run, step).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn end_wait(tx: &mut Connection, run: &str, step: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM waits WHERE run_id = $1 AND step = $2")
        .bind(run)
        .bind(step)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The inbox query, with the event an event message names and the end of
/// the child run a child message names.
pub(super) const PENDING_WITH_EVENTS: &str =
    "SELECT i.id, i.body, i.event_id, e.topic, e.data, e.created_ms, e.traceparent, \
     i.child_id, c.status AS child_status, c.output AS child_output, c.error AS child_error \
     FROM inbox i LEFT JOIN posted_events e ON e.id = i.event_id LEFT JOIN runs c ON c.id = i.child_id \
     WHERE i.run_id = $1 AND i.consumed_ms IS NULL ORDER BY i.id";
