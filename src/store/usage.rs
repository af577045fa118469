//! Usage per API token, workflow and UTC day (migration 0008): counted in
//! the same transactions that store the runs and the events whose attempts
//! consumed the fuel, so the sums always equal the attempts'.

use std::collections::HashMap;

use sqlx::Row as _;

use super::runs::{Append, NewRun};
use super::sqlite::Connection;
use super::{Db, StoreError};
use crate::run::EventKind;

/// Rows per multi-row statement.
const CHUNK: usize = 300;

/// One row of usage. `token` is empty for runs started without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub token: String,
    pub workflow: String,
    pub day: String,
    pub fuel: u64,
    pub runs: u64,
}

/// The UTC day (`YYYY-MM-DD`) of a time in ms since the epoch.
pub fn day_of(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .date_naive()
        .to_string()
}

/// Counts newly stored runs under their token, workflow and day.
pub(crate) async fn count_runs(tx: &mut Connection, runs: &[&NewRun]) -> Result<(), StoreError> {
    let mut counts: HashMap<(&str, &str, String), i64> = HashMap::new();
    for run in runs {
        let token = match &run.queued.kind {
            EventKind::RunQueued { origin, .. } => origin.token.as_deref().unwrap_or(""),
            _ => "",
        };
        *counts
            .entry((token, run.workflow.as_str(), day_of(run.queued.at_ms)))
            .or_default() += 1;
    }
    let counts: Vec<_> = counts.into_iter().collect();
    for chunk in counts.chunks(CHUNK) {
        let mut query = sqlx::QueryBuilder::new("INSERT INTO usage (token, workflow, day, runs) ");
        query.push_values(chunk, |mut row, ((token, workflow, day), n)| {
            row.push_bind(*token)
                .push_bind(*workflow)
                .push_bind(day.as_str())
                .push_bind(*n);
        });
        query.push(" ON CONFLICT (token, day, workflow) DO UPDATE SET runs = usage.runs + excluded.runs");
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Adds the fuel of the attempts these (accepted) appends record to their
/// runs' token, workflow and day.
pub(crate) async fn count_fuel(tx: &mut Connection, appends: &[&Append]) -> Result<(), StoreError> {
    let mut fuel: HashMap<(&str, &str, String), i64> = HashMap::new();
    for append in appends {
        for event in &append.events {
            if let Some(record) = event.kind.attempt_record().filter(|r| r.fuel_consumed > 0) {
                let key = (append.account.token.as_str(), append.account.workflow.as_str(), day_of(event.at_ms));
                *fuel.entry(key).or_default() += record.fuel_consumed as i64;
            }
        }
    }
    let fuel: Vec<_> = fuel.into_iter().collect();
    for chunk in fuel.chunks(CHUNK) {
        let mut query = sqlx::QueryBuilder::new("INSERT INTO usage (token, workflow, day, fuel) ");
        query.push_values(chunk, |mut row, ((token, workflow, day), n)| {
            row.push_bind(*token).push_bind(*workflow).push_bind(day.as_str()).push_bind(*n);
        });
        query.push(" ON CONFLICT (token, day, workflow) DO UPDATE SET fuel = usage.fuel + excluded.fuel");
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

impl Db {
    /// Every row of one day, by token then workflow.
    pub async fn usage(&self, day: &str) -> Result<Vec<Usage>, StoreError> {
        let rows =
            sqlx::query("SELECT token, workflow, day, fuel, runs FROM usage WHERE day = ? ORDER BY token, workflow")
                .bind(day)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Usage {
                    token: row.try_get("token")?,
                    workflow: row.try_get("workflow")?,
                    day: row.try_get("day")?,
                    fuel: row.try_get::<i64, _>("fuel")? as u64,
                    runs: row.try_get::<i64, _>("runs")? as u64,
                })
            })
            .collect()
    }

    /// The fuel one token's runs consumed on one day, over all workflows.
    pub async fn token_fuel(&self, token: &str, day: &str) -> Result<u64, StoreError> {
        let fuel: Option<i64> = sqlx::query_scalar("SELECT SUM(fuel) FROM usage WHERE token = ? AND day = ?")
            .bind(token)
            .bind(day)
            .fetch_one(&self.pool)
            .await?;
        Ok(fuel.unwrap_or(0) as u64)
    }
}
