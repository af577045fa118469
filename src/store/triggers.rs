//! The triggers of each workflow's latest version: schedules with the last
//! tick they started a run for, event topics, and webhooks with their last
//! delivery; and which posted events still have triggers to start runs for.

use sqlx::Row as _;

use super::{now_ms, Db, StoreError};

/// A trigger as stored for a workflow version.
#[derive(Debug, Clone)]
pub enum TriggerRow {
    Schedule { schedule: String, timezone: String },
    Event { topic: String },
    Webhook { hook: String },
}

/// One row of `triggers` as written.
#[derive(Default)]
struct Stored {
    kind: &'static str,
    topic: Option<String>,
    schedule: Option<String>,
    timezone: Option<String>,
    last_tick_ms: Option<i64>,
    last_run_id: Option<String>,
    hook: Option<String>,
    delivered_ms: Option<i64>,
    delivery: Option<String>,
    delivered_to: Option<String>,
}

/// A webhook and its last delivery.
#[derive(Debug, Clone)]
pub struct HookRow {
    pub hook: String,
    pub workflow: String,
    pub idx: i64,
    pub version: i64,
    /// When the last accepted delivery was stored (ms since the epoch).
    pub delivered_ms: Option<i64>,
    /// Its delivery id (or the body's digest).
    pub delivery: Option<String>,
    /// The run it started or the event it posted.
    pub delivered_to: Option<String>,
}

/// A schedule and how far it has fired.
#[derive(Debug, Clone)]
pub struct ScheduleRow {
    pub workflow: String,
    pub idx: i64,
    pub version: i64,
    pub schedule: String,
    pub timezone: String,
    /// Ticks up to here started their run (or were skipped).
    pub last_tick_ms: i64,
    pub last_run_id: Option<String>,
}

/// A posted event whose triggers have not all started their runs.
#[derive(Debug, Clone)]
pub struct Undispatched {
    pub id: String,
    pub topic: String,
    pub data: serde_json::Value,
    /// The W3C `traceparent` it was posted with: the runs it starts are
    /// its children.
    pub traceparent: Option<String>,
}

impl Db {
    /// Makes `triggers` the triggers of `workflow` (its version `version`):
    /// the others stop. A schedule whose expression and time zone are
    /// unchanged keeps how far it fired (a new one starts from now); a
    /// hook keeps its last delivery (a hook name is unique across workflows:
    /// see [`Db::hook_owner`]).
    pub async fn replace_triggers(
        &self,
        workflow: &str,
        version: i64,
        triggers: &[TriggerRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let old = sqlx::query(
            "SELECT kind, schedule, timezone, last_tick_ms, last_run_id, hook, delivered_ms, delivery, delivered_to \
             FROM triggers WHERE workflow = $1",
        )
        .bind(workflow)
        .fetch_all(&mut *tx)
        .await?;
        let fired = |schedule: &str, timezone: &str| {
            old.iter()
                .find(|r| {
                    r.get::<&str, _>("kind") == "schedule"
                        && r.get::<Option<&str>, _>("schedule") == Some(schedule)
                        && r.get::<Option<&str>, _>("timezone") == Some(timezone)
                })
                .map(|r| {
                    (
                        r.get::<Option<i64>, _>("last_tick_ms"),
                        r.get::<Option<String>, _>("last_run_id"),
                    )
                })
        };
        let delivered = |hook: &str| {
            old.iter()
                .find(|r| r.get::<Option<&str>, _>("hook") == Some(hook))
                .map(|r| {
                    (
                        r.get::<Option<i64>, _>("delivered_ms"),
                        r.get::<Option<String>, _>("delivery"),
                        r.get::<Option<String>, _>("delivered_to"),
                    )
                })
        };
        sqlx::query("DELETE FROM triggers WHERE workflow = $1")
            .bind(workflow)
            .execute(&mut *tx)
            .await?;
        for (idx, trigger) in triggers.iter().enumerate() {
            let mut row = Stored::default();
            match trigger {
                TriggerRow::Schedule { schedule, timezone } => {
                    let (tick, run) = fired(schedule, timezone).unwrap_or((Some(now_ms()), None));
                    row.kind = "schedule";
                    row.schedule = Some(schedule.clone());
                    row.timezone = Some(timezone.clone());
                    (row.last_tick_ms, row.last_run_id) = (tick, run);
                }
                TriggerRow::Event { topic } => {
                    row.kind = "event";
                    row.topic = Some(topic.clone());
                }
                TriggerRow::Webhook { hook } => {
                    row.kind = "webhook";
                    row.hook = Some(hook.clone());
                    (row.delivered_ms, row.delivery, row.delivered_to) = delivered(hook).unwrap_or_default();
                }
            }
            sqlx::query(
                "INSERT INTO triggers (workflow, idx, version, kind, topic, schedule, timezone, last_tick_ms, \
                 last_run_id, hook, delivered_ms, delivery, delivered_to) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(workflow)
            .bind(idx as i64)
            .bind(version)
            .bind(row.kind)
            .bind(row.topic)
            .bind(row.schedule)
            .bind(row.timezone)
            .bind(row.last_tick_ms)
            .bind(row.last_run_id)
            .bind(row.hook)
            .bind(row.delivered_ms)
            .bind(row.delivery)
            .bind(row.delivered_to)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every schedule, by workflow.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT workflow, idx, version, schedule, timezone, last_tick_ms, last_run_id FROM triggers \
             WHERE kind = 'schedule' ORDER BY workflow, idx",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleRow {
                    workflow: r.try_get("workflow")?,
                    idx: r.try_get("idx")?,
                    version: r.try_get("version")?,
                    schedule: r.try_get::<Option<String>, _>("schedule")?.unwrap_or_default(),
                    timezone: r.try_get::<Option<String>, _>("timezone")?.unwrap_or_default(),
                    last_tick_ms: r.try_get::<Option<i64>, _>("last_tick_ms")?.unwrap_or(0),
                    last_run_id: r.try_get("last_run_id")?,
                })
            })
            .collect()
    }

    /// Records that a schedule's ticks up to `tick_ms` are done, the last
    /// one having started `run_id` (none: skipped). Only moves forward, and
    /// only for the version that fired.
    pub async fn schedule_fired(
        &self,
        schedule: &ScheduleRow,
        tick_ms: i64,
        run_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE triggers SET last_tick_ms = $1, last_run_id = COALESCE($2, last_run_id) \
             WHERE workflow = $3 AND idx = $4 AND version = $5 AND COALESCE(last_tick_ms, 0) < $6",
        )
        .bind(tick_ms)
        .bind(run_id)
        .bind(&schedule.workflow)
        .bind(schedule.idx)
        .bind(schedule.version)
        .bind(tick_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every webhook, or the one named `hook`.
    pub async fn hooks(&self, hook: Option<&str>) -> Result<Vec<HookRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT hook, workflow, idx, version, delivered_ms, delivery, delivered_to FROM triggers \
             WHERE kind = 'webhook' AND ($1 IS NULL OR hook = $1) ORDER BY hook",
        )
        .bind(hook)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HookRow {
                    hook: r.try_get("hook")?,
                    workflow: r.try_get("workflow")?,
                    idx: r.try_get("idx")?,
                    version: r.try_get("version")?,
                    delivered_ms: r.try_get("delivered_ms")?,
                    delivery: r.try_get("delivery")?,
                    delivered_to: r.try_get("delivered_to")?,
                })
            })
            .collect()
    }

    /// The workflow other than `except` that has hook `hook`.
    pub async fn hook_owner(&self, hook: &str, except: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT workflow FROM triggers WHERE hook = $1 AND workflow <> $2")
            .bind(hook)
            .bind(except)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("workflow")))
    }

    /// Records a hook's accepted delivery (the latest one wins).
    pub async fn hook_delivered(&self, hook: &str, delivery: &str, to: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE triggers SET delivered_ms = $1, delivery = $2, delivered_to = $3 WHERE hook = $4")
            .bind(now_ms())
            .bind(delivery)
            .bind(to)
            .bind(hook)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The event triggers of `topic`: (workflow, trigger index, version).
    pub async fn event_triggers(&self, topic: &str) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT workflow, idx, version FROM triggers WHERE topic = $1 AND kind = 'event' ORDER BY workflow, idx",
        )
        .bind(topic)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("workflow")?, r.try_get("idx")?, r.try_get("version")?)))
            .collect()
    }

    /// Posted events not dispatched to their triggers yet, oldest first.
    pub async fn undispatched_events(&self, limit: i64) -> Result<Vec<Undispatched>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, topic, data, traceparent FROM posted_events WHERE dispatched_ms IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let data: String = r.try_get("data")?;
                let data = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
                    run_id: String::new(),
                    what: format!("event {id}"),
                    message: e.to_string(),
                })?;
                Ok(Undispatched {
                    id,
                    topic: r.try_get("topic")?,
                    data,
                    traceparent: r.try_get("traceparent")?,
                })
            })
            .collect()
    }

    /// Records the runs an event started and marks it dispatched.
    pub async fn event_dispatched(&self, event_id: &str, started: &[String]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for run in started {
            sqlx::query(
                "INSERT INTO event_runs (event_id, run_id, role) VALUES ($1, $2, 'started') ON CONFLICT DO NOTHING",
            )
            .bind(event_id)
            .bind(run)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE posted_events SET dispatched_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
