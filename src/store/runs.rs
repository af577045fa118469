//! Runs, their events, and who owns each unfinished run.
//!
//! Ownership: an unfinished run has an `owner` (a node id), a lease until
//! `lease_until_ms` that the owner's heartbeat extends, and a fencing token
//! `fence` that every claim increments. [`append`] writes a run's events
//! only when the writer still owns the run under the same fence and knows
//! its last sequence number; otherwise it writes nothing and answers
//! [`AppendRefused`]. A stale owner therefore cannot corrupt a run's
//! history, whatever it believes. Claims and leases are in
//! [`super::claims`].

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row as _;

use super::backend::Row;
use super::sql::Sql;
use super::{Db, StoreError};
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
    /// What the run returned: any JSON value (a code workflow may return a
    /// number or a string); null until the run completes.
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(skip)]
    pub modules: HashMap<String, String>,
    /// A paused run: when its first timer is due (ms).
    #[serde(skip)]
    pub wake_ms: Option<i64>,
    /// Its last event's hash, the head of its chain (none for a run
    /// recorded before chains).
    #[serde(skip)]
    pub head: Option<String>,
}

impl RunRow {
    /// Whether the run has ended (completed, failed or canceled).
    pub fn is_ended(&self) -> bool {
        crate::run::RunStatus::parse(&self.status).is_some_and(crate::run::RunStatus::is_terminal)
    }

    /// The row as the store leaves it once `events` are appended.
    pub fn follow(&mut self, events: &[Event]) {
        if let Some(change) = status_change(events) {
            self.status = change.status.into();
            self.updated_ms = change.at_ms;
            self.wake_ms = change.wake_ms;
            if let Some(output) = change.output {
                self.output = Some(output.clone());
            }
            if let Some(error) = change.error {
                self.error = Some(error.to_string());
            }
        }
    }
}

/// The run row's status after some events, when one of them changes it.
pub(super) struct StatusChange<'a> {
    pub status: &'static str,
    /// When the event that set it happened: the row's `updated_ms`.
    pub at_ms: i64,
    pub output: Option<&'a serde_json::Value>,
    pub error: Option<&'a str>,
    pub ended: bool,
    /// A paused run's first timer.
    pub wake_ms: Option<i64>,
}

pub(super) fn status_change(events: &[Event]) -> Option<StatusChange<'_>> {
    let mut change = None;
    for event in events {
        let mut wake_ms = None;
        let (status, output, error) = match &event.kind {
            EventKind::RunStarted | EventKind::RunResumed => ("running", None, None),
            EventKind::RunPaused { wake_ms: wake } => {
                wake_ms = wake.map(|w| w as i64);
                ("paused", None, None)
            }
            EventKind::RunCanceling { .. } => ("canceling", None, None),
            EventKind::RunCompleted { output } => ("completed", Some(output), None),
            EventKind::RunFailed { error } => ("failed", None, Some(error.as_str())),
            EventKind::RunCanceled { .. } => ("canceled", None, None),
            _ => continue,
        };
        change = Some(StatusChange {
            status,
            at_ms: event.at_ms as i64,
            output,
            error,
            ended: event.kind.is_final(),
            wake_ms,
        });
    }
    change
}

pub(super) const COLUMNS: &str =
    "id, workflow, version, status, idempotency_key, input, output, error, modules, created_ms, updated_ms, wake_ms, head";

pub(super) const UNFINISHED: &str = "status NOT IN ('completed', 'failed', 'canceled')";

pub(super) fn run_row(row: &Row) -> Result<RunRow, StoreError> {
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
        wake_ms: row.try_get("wake_ms")?,
        head: row.try_get("head")?,
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
    /// Only runs created at or after this time (ms since the epoch).
    pub created_after_ms: Option<i64>,
    /// Only runs created before this time (ms since the epoch).
    pub created_before_ms: Option<i64>,
    pub limit: i64,
}

/// The smallest UUIDv7 text of a run created at `ms` (run ids sort by
/// creation time): bounds a time range by the primary key.
fn id_at(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    format!("{:08x}-{:04x}", (ms >> 16) & 0xffff_ffff, ms & 0xffff)
}

/// A second of slack around an id bound: a run's id and its `created_ms`
/// may be read from the clock apart; `created_ms` decides exactly.
const ID_SLACK_MS: i64 = 1000;

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
    /// Each event as its row stores it, encoded by the caller
    /// ([`Append::new`]) so the writer's transaction does not.
    pub bodies: Vec<String>,
    /// Each event's chain hash (hex), after the run's head; empty for a
    /// run recorded before chains.
    pub hashes: Vec<String>,
    pub consumed: Vec<i64>,
    /// Whether the run's workflow throttles: its end then gives back its
    /// units' `throttle:` slots.
    pub throttled: bool,
}

impl Append {
    /// An append of `events` after `expected_seq`, consuming the inbox
    /// messages `consumed`, by the holder of `lease`; the events chain on
    /// from `head`, the run's last hash (none: the run has no chain).
    pub fn new(
        run_id: String,
        lease: Lease,
        expected_seq: u64,
        events: Vec<Event>,
        consumed: Vec<i64>,
        throttled: bool,
        head: Option<&crate::run::chain::Hash>,
    ) -> Append {
        let bodies: Vec<String> = events.iter().map(super::append::encode).collect();
        let mut hashes = Vec::new();
        if let Some(head) = head {
            let mut prev = *head;
            hashes.reserve(bodies.len());
            for body in &bodies {
                prev = crate::run::chain::link(&run_id, Some(&prev), body);
                hashes.push(crate::run::chain::hex(&prev));
            }
        }
        Append {
            run_id,
            lease,
            expected_seq,
            events,
            bodies,
            hashes,
            consumed,
            throttled,
        }
    }

    /// The run's head once this append is stored.
    pub fn head(&self) -> Option<&str> {
        self.hashes.last().map(String::as_str)
    }
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
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    /// The runs of `workflow` that have not ended and are not being
    /// canceled, oldest first.
    pub async fn unfinished_runs(&self, workflow: &str) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs WHERE workflow = $1 AND status IN ('queued', 'running', 'paused') ORDER BY id"
        ))
        .bind(workflow)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let mut query = Sql::new(self.kind(), format!("SELECT {COLUMNS} FROM runs WHERE 1 = 1"));
        if let Some(workflow) = &filter.workflow {
            query.push(" AND workflow = ").bind(workflow);
        }
        if let Some(status) = &filter.status {
            query.push(" AND status = ").bind(status);
        }
        if let Some(before) = &filter.before {
            query.push(" AND id < ").bind(before);
        }
        if let Some(after) = filter.created_after_ms {
            query.push(" AND id >= ").bind(id_at(after.saturating_sub(ID_SLACK_MS)));
            query.push(" AND created_ms >= ").bind(after);
        }
        if let Some(before) = filter.created_before_ms {
            query.push(" AND id < ").bind(id_at(before.saturating_add(ID_SLACK_MS)));
            query.push(" AND created_ms < ").bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").bind(filter.limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }

    /// Events of a run with `seq > after`, in order. An event that cannot
    /// be decoded is an error, never skipped.
    pub async fn events(&self, run_id: &str, after: u64) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query("SELECT seq, at_ms, body FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq")
            .bind(run_id)
            .bind(after as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let body: &str = row.try_get("body")?;
            // The columns hold what the body repeats around the kind: only
            // the kind is decoded (an `Event`, flattened, would buffer the
            // whole body before decoding it again, about 20% more).
            let kind = serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                run_id: run_id.to_string(),
                what: format!("event {seq}"),
                message: e.to_string(),
            })?;
            events.push(Event {
                seq: seq as u64,
                run_id: run_id.to_string(),
                at_ms: row.try_get::<i64, _>("at_ms")? as u64,
                kind,
            });
        }
        Ok(events)
    }

    /// The sequence number of a run's latest event (0 for none).
    pub async fn last_seq(&self, run_id: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM events WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("seq")?.max(0) as u64)
    }

    /// Counts of runs by status (for metrics).
    pub async fn run_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get("status"), r.get("n"))).collect())
    }

    /// Paused runs `node` owns whose first timer is due by `now_ms`.
    pub async fn due_runs(&self, node: &str, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE owner = $1 AND wake_ms IS NOT NULL AND wake_ms <= $2 AND status = 'paused'",
        )
        .bind(node)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }

    /// The first timer due among the paused runs `node` owns.
    pub async fn next_wake(&self, node: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MIN(wake_ms) AS next FROM runs WHERE owner = $1 AND wake_ms IS NOT NULL")
            .bind(node)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("next")?)
    }

    /// A run's row with its owner and fence (when it has an owner): one read.
    pub async fn run_with_lease(&self, id: &str) -> Result<Option<(RunRow, Option<Lease>)>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS}, owner, fence FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let owner: Option<String> = row.try_get("owner")?;
            let lease = match owner {
                Some(node) => Some(Lease {
                    node,
                    fence: row.try_get("fence")?,
                }),
                None => None,
            };
            Ok((run_row(&row)?, lease))
        })
        .transpose()
    }
}
