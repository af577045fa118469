//! PostgreSQL's own counts for a database (`pg_stat_database`), for
//! `sandstep bench cluster`: what the nodes cost the database per step.

use super::StoreError;

/// A connection to read a PostgreSQL database's statistics.
pub struct DatabaseStats(sqlx::PgPool);

impl DatabaseStats {
    pub async fn connect(url: &str) -> Result<DatabaseStats, StoreError> {
        Ok(DatabaseStats(sqlx::PgPool::connect(url).await?))
    }

    /// Commits, and rows inserted, updated and deleted, in the database so
    /// far (backends report their counts about once a second: wait that
    /// long after the work before asking).
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&self.0).await?;
        let row: (i64, i64) = sqlx::query_as(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database \
             WHERE datname = current_database()",
        )
        .fetch_one(&self.0)
        .await?;
        Ok(row)
    }
}
