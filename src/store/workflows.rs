//! Workflow versions: each `PUT` of a definition is a new immutable version.

use serde::Serialize;
use sqlx::Row as _;

use super::backend::Row;
use super::{now_ms, Db, StoreError};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: i64,
    pub source: String,
    pub created_ms: i64,
}

fn version_of(row: &Row) -> WorkflowVersion {
    WorkflowVersion {
        name: row.get("name"),
        version: row.get("version"),
        source: row.get("source"),
        created_ms: row.get("created_ms"),
    }
}

impl Db {
    /// Stores `source` as the next version of `name`, unless it equals the
    /// latest version, which is then returned unchanged (`false`).
    pub async fn put_workflow(&self, name: &str, source: &str) -> Result<(WorkflowVersion, bool), StoreError> {
        let mut tx = self.write().await?;
        let latest = sqlx::query(
            "SELECT name, version, source, created_ms FROM workflows WHERE name = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| version_of(&r));
        if let Some(latest) = latest.as_ref().filter(|l| l.source == source) {
            return Ok((latest.clone(), false));
        }
        let next = latest.map_or(1, |l| l.version + 1);
        let created = now_ms();
        sqlx::query("INSERT INTO workflows (name, version, source, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(next)
            .bind(source)
            .bind(created)
            .execute(&mut *tx)
            .await?;
        super::notify::send(&mut tx, self.kind(), &[super::notify::Signal::Workflows]).await?;
        tx.commit().await?;
        Ok((
            WorkflowVersion {
                name: name.into(),
                version: next,
                source: source.into(),
                created_ms: created,
            },
            true,
        ))
    }

    /// One version, or the latest with `None`.
    pub async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>, StoreError> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT name, version, source, created_ms FROM workflows WHERE name = $1 AND version = $2")
                    .bind(name)
                    .bind(v)
            }
            None => sqlx::query(
                "SELECT name, version, source, created_ms FROM workflows WHERE name = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(name),
        }
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| version_of(&r)))
    }

    /// The number of the latest version of `name`.
    pub async fn latest_version(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS version FROM workflows WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get("version"))
    }

    /// The latest version of every workflow.
    pub async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.name, w.version, w.source, w.created_ms FROM workflows w \
             WHERE w.version = (SELECT MAX(version) FROM workflows v WHERE v.name = w.name) ORDER BY w.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(version_of).collect())
    }

    pub async fn workflow_versions(&self, name: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM workflows WHERE name = $1 ORDER BY version")
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get("version")).collect())
    }
}
