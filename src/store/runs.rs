//! Runs and their events.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use super::{now_ms, Db, DbError};
use crate::run::Event;

/// A run's row: what lists show without folding events.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunRow {
    pub id: String,
    pub workflow: String,
    pub version: i64,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    #[schema(value_type = Object)]
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(skip)]
    pub modules: HashMap<String, String>,
}

impl RunRow {
    /// Whether the run has ended (completed, failed or canceled).
    pub fn is_ended(&self) -> bool {
        crate::run::RunStatus::parse(&self.status).is_some_and(crate::run::RunStatus::is_terminal)
    }
}

const COLUMNS: &str =
    "id, workflow, version, status, idempotency_key, input, output, error, modules, created_ms, updated_ms";

fn run_row(row: &sqlx::sqlite::SqliteRow) -> RunRow {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    RunRow {
        id: row.get("id"),
        workflow: row.get("workflow"),
        version: row.get("version"),
        status: row.get("status"),
        idempotency_key: row.get("idempotency_key"),
        input: json(row.get("input")).unwrap_or_default(),
        output: json(row.get("output")),
        error: row.get("error"),
        modules: row
            .get::<Option<String>, _>("modules")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        created_ms: row.get("created_ms"),
        updated_ms: row.get("updated_ms"),
    }
}

/// Filters and a cursor for listing runs, newest first.
#[derive(Debug, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<String>,
    /// Only runs older than this id (the previous page's `next_cursor`).
    pub before: Option<String>,
    pub limit: i64,
}

/// Why a new run was not inserted.
pub enum Inserted {
    New,
    /// A run with this workflow and idempotency key exists already.
    Existing(Box<RunRow>),
}

impl Db {
    /// Inserts a run with its first event (`run.queued`), in one transaction.
    pub async fn insert_run(
        &self,
        id: &str,
        workflow: &str,
        version: i64,
        idempotency_key: Option<&str>,
        modules: &HashMap<String, String>,
        first: &Event,
    ) -> Result<Inserted, DbError> {
        let mut tx = self.write().await?;
        if let Some(key) = idempotency_key {
            let existing = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM runs WHERE workflow = ? AND idempotency_key = ?"
            ))
            .bind(workflow)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                return Ok(Inserted::Existing(Box::new(run_row(&row))));
            }
        }
        let now = now_ms();
        let input = match &first.kind {
            crate::run::EventKind::RunQueued { input, .. } => input.to_string(),
            _ => "null".into(),
        };
        sqlx::query(
            "INSERT INTO runs (id, workflow, version, status, idempotency_key, input, modules, created_ms, updated_ms, last_seq) \
             VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(workflow)
        .bind(version)
        .bind(idempotency_key)
        .bind(input)
        .bind(serde_json::to_string(modules).unwrap_or_default())
        .bind(now)
        .bind(now)
        .bind(first.seq as i64)
        .execute(&mut *tx)
        .await?;
        insert_events(&mut tx, &[first]).await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    pub async fn run(&self, id: &str) -> Result<Option<RunRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM runs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| run_row(&r)))
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, DbError> {
        let mut query = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM runs WHERE 1 = 1"));
        if let Some(workflow) = &filter.workflow {
            query.push(" AND workflow = ").push_bind(workflow);
        }
        if let Some(status) = &filter.status {
            query.push(" AND status = ").push_bind(status);
        }
        if let Some(before) = &filter.before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(run_row).collect())
    }

    /// Runs that have not ended: resumed when the server starts.
    pub async fn unfinished_runs(&self) -> Result<Vec<RunRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs WHERE status NOT IN ('completed', 'failed', 'canceled') ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    /// Events of a run with `seq > after`, in order.
    pub async fn events(&self, run_id: &str, after: u64) -> Result<Vec<Event>, DbError> {
        let rows = sqlx::query("SELECT body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq")
            .bind(run_id)
            .bind(after as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<&str, _>("body")).ok())
            .collect())
    }

    /// Counts of runs by status (for metrics).
    pub async fn run_counts(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get("status"), r.get("n"))).collect())
    }
}

/// Appends events and moves each run's row to its latest status.
pub(crate) async fn insert_events(tx: &mut sqlx::SqliteConnection, events: &[&Event]) -> Result<(), sqlx::Error> {
    for chunk in events.chunks(200) {
        let mut query = sqlx::QueryBuilder::new("INSERT INTO events (run_id, seq, at_ms, type, body) ");
        query.push_values(chunk, |mut row, event| {
            row.push_bind(&event.run_id)
                .push_bind(event.seq as i64)
                .push_bind(event.at_ms as i64)
                .push_bind(event.kind.name())
                .push_bind(serde_json::to_string(event).unwrap_or_default());
        });
        query.build().execute(&mut *tx).await?;
    }
    // A run's row changes only with its status; step events live in `events`.
    /// New status, output, error and the seq of the event that set them.
    type Change = (&'static str, Option<String>, Option<String>, u64);
    let mut status: HashMap<&str, Change> = HashMap::new();
    for event in events {
        use crate::run::EventKind::*;
        let change = match &event.kind {
            RunStarted => ("running", None, None),
            RunCanceling { .. } => ("canceling", None, None),
            RunCompleted { output } => ("completed", Some(output.to_string()), None),
            RunFailed { error } => ("failed", None, Some(error.clone())),
            RunCanceled { .. } => ("canceled", None, None),
            _ => continue,
        };
        status.insert(&event.run_id, (change.0, change.1, change.2, event.seq));
    }
    let now = now_ms();
    for (run_id, (status, output, error, seq)) in status {
        sqlx::query(
            "UPDATE runs SET status = ?, output = COALESCE(?, output), error = COALESCE(?, error), \
             updated_ms = ?, last_seq = ? WHERE id = ?",
        )
        .bind(status)
        .bind(output)
        .bind(error)
        .bind(now)
        .bind(seq as i64)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
