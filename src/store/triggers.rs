//! The triggers of each workflow's latest version: schedules with the last
//! tick they started a run for, and event topics; and which posted events
//! still have triggers to start runs for.

use sqlx::Row as _;

use super::{now_ms, Db, StoreError};

/// A trigger as stored for a workflow version.
#[derive(Debug, Clone)]
pub enum TriggerRow {
    Schedule { schedule: String, timezone: String },
    Event { topic: String },
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
}

impl Db {
    /// Makes `triggers` the triggers of `workflow` (its version `version`):
    /// the others stop. A schedule whose expression and time zone are
    /// unchanged keeps how far it fired; a new one starts from now.
    pub async fn replace_triggers(
        &self,
        workflow: &str,
        version: i64,
        triggers: &[TriggerRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let old = sqlx::query("SELECT schedule, timezone, last_tick_ms, last_run_id FROM triggers WHERE workflow = $1 AND kind = 'schedule'")
            .bind(workflow)
            .fetch_all(&mut *tx)
            .await?;
        let fired = |schedule: &str, timezone: &str| {
            old.iter()
                .find(|r| {
                    r.get::<Option<&str>, _>("schedule") == Some(schedule)
                        && r.get::<Option<&str>, _>("timezone") == Some(timezone)
                })
                .map(|r| {
                    (
                        r.get::<Option<i64>, _>("last_tick_ms"),
                        r.get::<Option<String>, _>("last_run_id"),
                    )
                })
        };
        let mut rows = Vec::new();
        for (idx, trigger) in triggers.iter().enumerate() {
            rows.push(match trigger {
                TriggerRow::Schedule { schedule, timezone } => {
                    let (tick, run) = fired(schedule, timezone).unwrap_or((Some(now_ms()), None));
                    (
                        idx as i64,
                        "schedule",
                        None,
                        Some(schedule.clone()),
                        Some(timezone.clone()),
                        tick,
                        run,
                    )
                }
                TriggerRow::Event { topic } => (idx as i64, "event", Some(topic.clone()), None, None, None, None),
            });
        }
        sqlx::query("DELETE FROM triggers WHERE workflow = $1")
            .bind(workflow)
            .execute(&mut *tx)
            .await?;
        for (idx, kind, topic, schedule, timezone, tick, run) in rows {
            sqlx::query(
                "INSERT INTO triggers (workflow, idx, version, kind, topic, schedule, timezone, last_tick_ms, last_run_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(workflow)
            .bind(idx)
            .bind(version)
            .bind(kind)
            .bind(topic)
            .bind(schedule)
            .bind(timezone)
            .bind(tick)
            .bind(run)
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
        let rows =
            sqlx::query("SELECT id, topic, data FROM posted_events WHERE dispatched_ms IS NULL ORDER BY seq LIMIT $1")
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
