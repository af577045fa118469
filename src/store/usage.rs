//! Usage per API token (migration 0008): each run row carries the token it
//! was started with and the fuel its attempts consumed, moved by the same
//! append that records each attempt, so the sums always equal the
//! attempts'. A day's usage is that of the runs started on it (UTC).

use sqlx::Row as _;

use super::{Db, StoreError};

/// One row of usage. `token` is empty for runs started without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub token: String,
    pub workflow: String,
    pub day: String,
    pub fuel: u64,
    pub runs: u64,
}

const DAY_MS: i64 = 86_400_000;

/// Where a UTC day begins, in ms since the epoch.
fn day_start(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_millis()
}

impl Db {
    /// The usage of the runs started on `day`, by token then workflow.
    pub async fn usage(&self, day: chrono::NaiveDate) -> Result<Vec<Usage>, StoreError> {
        let start = day_start(day);
        let rows = sqlx::query(
            "SELECT COALESCE(token, '') AS token, workflow, CAST(SUM(fuel) AS BIGINT) AS fuel, COUNT(*) AS runs FROM runs \
             WHERE created_ms >= $1 AND created_ms < $2 GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(start)
        .bind(start + DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Usage {
                    token: row.try_get("token")?,
                    workflow: row.try_get("workflow")?,
                    day: day.to_string(),
                    fuel: row.try_get::<i64, _>("fuel")? as u64,
                    runs: row.try_get::<i64, _>("runs")? as u64,
                })
            })
            .collect()
    }

    /// The fuel consumed by one token's runs started on `day`.
    pub async fn token_fuel(&self, token: &str, day: chrono::NaiveDate) -> Result<u64, StoreError> {
        let start = day_start(day);
        let fuel: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(fuel) AS BIGINT) FROM runs WHERE token = $1 AND created_ms >= $2 AND created_ms < $3",
        )
        .bind(token)
        .bind(start)
        .bind(start + DAY_MS)
        .fetch_one(&self.pool)
        .await?;
        Ok(fuel.unwrap_or(0) as u64)
    }
}
