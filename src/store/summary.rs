//! What a list of runs shows of each run's steps without folding its events:
//! how many steps ended, and how, counted from the events' types.

use std::collections::HashMap;

use sqlx::Row as _;

use super::sql::Sql;
use super::{Db, StoreError};

/// Per run: how many of its steps ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepEnds {
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    pub canceled: i64,
    /// A re-run: steps whose recorded output it took from `rerun_of`.
    pub reused: i64,
}

impl Db {
    /// [`StepEnds`] of each of `run_ids` (runs without ended steps are
    /// absent). One grouped count over the runs' events, plus the first
    /// event of those that are re-runs.
    pub async fn step_ends(&self, run_ids: &[String]) -> Result<HashMap<String, StepEnds>, StoreError> {
        let mut ends: HashMap<String, StepEnds> = HashMap::new();
        if run_ids.is_empty() {
            return Ok(ends);
        }
        let mut query = Sql::new(
            self.kind(),
            "SELECT run_id, type, COUNT(*) AS n FROM events WHERE type IN \
             ('step.succeeded', 'step.failed', 'step.skipped', 'step.canceled') AND run_id IN ",
        );
        query.list(run_ids.iter().map(String::as_str));
        query.push(" GROUP BY run_id, type");
        for row in query.build().fetch_all(&self.pool).await? {
            let counts = ends.entry(row.try_get("run_id")?).or_default();
            let n: i64 = row.try_get("n")?;
            match row.try_get::<&str, _>("type")? {
                "step.succeeded" => counts.succeeded = n,
                "step.failed" => counts.failed = n,
                "step.skipped" => counts.skipped = n,
                _ => counts.canceled = n,
            }
        }
        let mut query = Sql::new(
            self.kind(),
            "SELECT run_id, body FROM events WHERE type = 'run.queued' AND body LIKE '%\"reused\"%' AND run_id IN ",
        );
        query.list(run_ids.iter().map(String::as_str));
        for row in query.build().fetch_all(&self.pool).await? {
            let body: &str = row.try_get("body")?;
            let event: crate::run::Event = serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                run_id: row.get("run_id"),
                what: "its run.queued event".into(),
                message: e.to_string(),
            })?;
            if let crate::run::EventKind::RunQueued { origin, .. } = event.kind {
                ends.entry(row.try_get("run_id")?).or_default().reused = origin.reused.len() as i64;
            }
        }
        Ok(ends)
    }
}
