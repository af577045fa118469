//! Runs, their events, and who owns each unfinished run.
//!
//! Ownership: an unfinished run has an `owner` (a node id), a lease until
//! `lease_until_ms` that the owner's heartbeat extends, and a fencing token
//! `fence` that every claim increments. [`append`] writes a run's events
//! only when the writer still owns the run under the same fence and knows
//! its last sequence number; otherwise it writes nothing and answers
//! [`AppendRefused`]. A stale owner therefore cannot corrupt a run's
//! history, whatever it believes.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row as _;

use super::sqlite::{Connection, Row};
use super::{now_ms, Db, StoreError};
use crate::run::{Event, EventKind};

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

const UNFINISHED: &str = "status NOT IN ('completed', 'failed', 'canceled')";

fn run_row(row: &Row) -> Result<RunRow, StoreError> {
    let id: String = row.try_get("id")?;
    let json = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                run_id: id.clone(),
                what: format!("run {column}"),
                message: e.to_string(),
            })
    };
    let modules = match json("modules")? {
        Some(value) => serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
            run_id: id.clone(),
            what: "run modules".into(),
            message: e.to_string(),
        })?,
        None => HashMap::new(),
    };
    Ok(RunRow {
        workflow: row.try_get("workflow")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        idempotency_key: row.try_get("idempotency_key")?,
        input: json("input")?.unwrap_or_default(),
        output: json("output")?,
        error: row.try_get("error")?,
        modules,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        id,
    })
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

/// A run to store with its first event (`run.queued`).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub version: i64,
    pub idempotency_key: Option<String>,
    /// Module references pinned to digests.
    pub modules: HashMap<String, String>,
    pub queued: Event,
}

/// What storing a [`NewRun`] did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Stored, owned by the inserting node under fence 1.
    New(RunRow),
    /// A run of this workflow with this idempotency key exists already.
    Existing(RunRow),
}

/// A node's hold on one run: its id and the fence it claimed the run under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub fence: i64,
}

/// One conditional append: `events` follow `expected_seq` in the run of
/// `lease` holder; `consumed` inbox messages are marked consumed with them.
#[derive(Debug, Clone)]
pub struct Append {
    pub run_id: String,
    pub lease: Lease,
    pub expected_seq: u64,
    pub events: Vec<Event>,
    pub consumed: Vec<i64>,
}

/// An append that wrote nothing: the run moved on without this writer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run {run_id}: append refused: {reason}")]
pub struct AppendRefused {
    pub run_id: String,
    pub reason: String,
}

impl Db {
    pub async fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM runs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
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
        rows.iter().map(run_row).collect()
    }

    /// Events of a run with `seq > after`, in order. An event that cannot
    /// be decoded is an error, never skipped.
    pub async fn events(&self, run_id: &str, after: u64) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query("SELECT seq, body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq")
            .bind(run_id)
            .bind(after as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let body: &str = row.try_get("body")?;
                serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                    run_id: run_id.to_string(),
                    what: format!("event {}", row.get::<i64, _>("seq")),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Counts of runs by status (for metrics).
    pub async fn run_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get("status"), r.get("n"))).collect())
    }

    /// Claims for `node` every unfinished run that is unowned, whose lease
    /// has expired, or that `node` owned before (a restart): each claimed
    /// run's fence moves on, so a previous holder's appends are refused.
    pub async fn claim_runs(&self, node: &str, lease_until_ms: i64) -> Result<Vec<(RunRow, Lease)>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        sqlx::query(&format!(
            "UPDATE runs SET owner = ?, lease_until_ms = ?, fence = fence + 1 \
             WHERE {UNFINISHED} AND (owner IS NULL OR owner = ? OR lease_until_ms < ?)"
        ))
        .bind(node)
        .bind(lease_until_ms)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, fence FROM runs WHERE {UNFINISHED} AND owner = ? ORDER BY id"
        ))
        .bind(node)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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

    /// Extends the lease of every unfinished run `node` owns; the count.
    pub async fn renew_leases(&self, node: &str, lease_until_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let renewed = sqlx::query(&format!(
            "UPDATE runs SET lease_until_ms = ? WHERE owner = ? AND {UNFINISHED}"
        ))
        .bind(lease_until_ms)
        .bind(node)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(renewed)
    }

    /// Gives up every run `node` owns (a clean stop): another node, or this
    /// one after a restart, claims them at once.
    pub async fn release_runs(&self, node: &str) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let released = sqlx::query("UPDATE runs SET owner = NULL, lease_until_ms = NULL WHERE owner = ?")
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    /// The owner and fence of a run, if it has an owner.
    pub async fn run_lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError> {
        let row = sqlx::query("SELECT owner, fence FROM runs WHERE id = ? AND owner IS NOT NULL")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Lease {
                node: r.try_get("owner")?,
                fence: r.try_get("fence")?,
            })
        })
        .transpose()
    }
}

/// Stores runs with their `run.queued` events, owned by `node` until
/// `lease_until_ms`. A run whose workflow and idempotency key exist already
/// (stored before, or earlier in this transaction) is answered, not stored.
pub(crate) async fn insert_runs(
    tx: &mut Connection,
    node: &str,
    lease_until_ms: i64,
    runs: &[NewRun],
) -> Result<Vec<Inserted>, StoreError> {
    let now = now_ms();
    let mut out = Vec::with_capacity(runs.len());
    let mut queued = Vec::with_capacity(runs.len());
    for run in runs {
        if let Some(key) = &run.idempotency_key {
            let existing = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM runs WHERE workflow = ? AND idempotency_key = ?"
            ))
            .bind(&run.workflow)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                out.push(Inserted::Existing(run_row(&row)?));
                continue;
            }
        }
        let input = match &run.queued.kind {
            EventKind::RunQueued { input, .. } => input.clone(),
            _ => serde_json::Value::Null,
        };
        sqlx::query(
            "INSERT INTO runs (id, workflow, version, status, idempotency_key, input, modules, created_ms, updated_ms, \
             last_seq, owner, lease_until_ms, fence) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
        .bind(&run.id)
        .bind(&run.workflow)
        .bind(run.version)
        .bind(&run.idempotency_key)
        .bind(input.to_string())
        .bind(serde_json::to_string(&run.modules).expect("a map of strings serializes"))
        .bind(now)
        .bind(now)
        .bind(run.queued.seq as i64)
        .bind(node)
        .bind(lease_until_ms)
        .execute(&mut *tx)
        .await?;
        queued.push(&run.queued);
        out.push(Inserted::New(RunRow {
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            version: run.version,
            status: "queued".into(),
            idempotency_key: run.idempotency_key.clone(),
            input,
            output: None,
            error: None,
            created_ms: now,
            updated_ms: now,
            modules: run.modules.clone(),
        }));
    }
    insert_events(tx, &queued).await?;
    Ok(out)
}

/// Applies conditional appends in order; each is refused (writing nothing)
/// unless its lease holder still owns the run under the same fence and its
/// `expected_seq` is the run's last. Accepted appends move the run's row to
/// its latest status and consume their inbox messages.
pub(crate) async fn append(
    tx: &mut Connection,
    appends: &[&Append],
) -> Result<Vec<Result<(), AppendRefused>>, StoreError> {
    let now = now_ms();
    let mut results = Vec::with_capacity(appends.len());
    let mut accepted: Vec<&Event> = Vec::new();
    for append in appends {
        let Some(last) = append.events.last() else {
            results.push(Ok(()));
            continue;
        };
        let change = status_change(&append.events);
        let ended = change.as_ref().is_some_and(|c| c.ended);
        let (status, output, error) = match change {
            Some(c) => (Some(c.status), c.output, c.error),
            None => (None, None, None),
        };
        let updated = sqlx::query(
            "UPDATE runs SET last_seq = ?, status = COALESCE(?, status), output = COALESCE(?, output), \
             error = COALESCE(?, error), updated_ms = COALESCE(?, updated_ms), \
             owner = CASE WHEN ? THEN NULL ELSE owner END, \
             lease_until_ms = CASE WHEN ? THEN NULL ELSE lease_until_ms END \
             WHERE id = ? AND last_seq = ? AND owner = ? AND fence = ?",
        )
        .bind(last.seq as i64)
        .bind(status)
        .bind(output)
        .bind(error)
        .bind(status.map(|_| now))
        .bind(ended)
        .bind(ended)
        .bind(&append.run_id)
        .bind(append.expected_seq as i64)
        .bind(&append.lease.node)
        .bind(append.lease.fence)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            results.push(Err(refusal(tx, append).await?));
            continue;
        }
        if ended {
            sqlx::query("UPDATE inbox SET consumed_ms = ? WHERE run_id = ? AND consumed_ms IS NULL")
                .bind(now)
                .bind(&append.run_id)
                .execute(&mut *tx)
                .await?;
        } else {
            for id in &append.consumed {
                sqlx::query("UPDATE inbox SET consumed_ms = ? WHERE id = ? AND run_id = ?")
                    .bind(now)
                    .bind(id)
                    .bind(&append.run_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        accepted.extend(append.events.iter());
        results.push(Ok(()));
    }
    insert_events(tx, &accepted).await?;
    Ok(results)
}

/// Why an append matched no row, for the error.
async fn refusal(tx: &mut Connection, append: &Append) -> Result<AppendRefused, StoreError> {
    let row = sqlx::query("SELECT last_seq, owner, fence FROM runs WHERE id = ?")
        .bind(&append.run_id)
        .fetch_optional(&mut *tx)
        .await?;
    let reason = match row {
        None => "no such run".to_string(),
        Some(row) => {
            let seq: i64 = row.try_get("last_seq")?;
            let owner: Option<String> = row.try_get("owner")?;
            let fence: i64 = row.try_get("fence")?;
            if owner.as_deref() != Some(append.lease.node.as_str()) || fence != append.lease.fence {
                format!(
                    "the run is owned by {} under fence {fence}, not by {} under fence {}",
                    owner.as_deref().unwrap_or("nobody"),
                    append.lease.node,
                    append.lease.fence
                )
            } else {
                format!("expected last seq {}, the run is at {seq}", append.expected_seq)
            }
        }
    };
    Ok(AppendRefused {
        run_id: append.run_id.clone(),
        reason,
    })
}

/// The run row's status after `events`, when one of them changes it.
struct StatusChange {
    status: &'static str,
    output: Option<String>,
    error: Option<String>,
    ended: bool,
}

fn status_change(events: &[Event]) -> Option<StatusChange> {
    let mut change = None;
    for event in events {
        let (status, output, error) = match &event.kind {
            EventKind::RunStarted => ("running", None, None),
            EventKind::RunCanceling { .. } => ("canceling", None, None),
            EventKind::RunCompleted { output } => ("completed", Some(output.to_string()), None),
            EventKind::RunFailed { error } => ("failed", None, Some(error.clone())),
            EventKind::RunCanceled { .. } => ("canceled", None, None),
            _ => continue,
        };
        change = Some(StatusChange {
            status,
            output,
            error,
            ended: event.kind.is_final(),
        });
    }
    change
}

/// Inserts events as they are (the caller checked they may be written).
async fn insert_events(tx: &mut Connection, events: &[&Event]) -> Result<(), StoreError> {
    for chunk in events.chunks(200) {
        let mut query = sqlx::QueryBuilder::new("INSERT INTO events (run_id, seq, at_ms, type, body) ");
        query.push_values(chunk, |mut row, event| {
            row.push_bind(&event.run_id)
                .push_bind(event.seq as i64)
                .push_bind(event.at_ms as i64)
                .push_bind(event.kind.name())
                .push_bind(serde_json::to_string(event).expect("an event serializes"));
        });
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}
