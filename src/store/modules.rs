//! Modules in the database: bytes by digest, `name:tag` references.

use serde::Serialize;
use sqlx::Row as _;

use super::backend::Row;
use super::{now_ms, Db, StoreError};
use crate::modules::Reference;
use crate::sandbox::ModuleInfo;

/// A stored module as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModuleRecord {
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub kind: String,
    pub size: i64,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub updated_ms: i64,
    /// The digest the tag pointed at before, when this moved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

fn record(row: &Row) -> Result<ModuleRecord, sqlx::Error> {
    let list = |column: &str| -> Result<Vec<String>, sqlx::Error> {
        let text: String = row.try_get(column)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(ModuleRecord {
        name: row.try_get("name")?,
        tag: row.try_get("tag")?,
        digest: row.try_get("digest")?,
        kind: row.try_get("kind")?,
        size: row.try_get("size")?,
        imports: list("imports")?,
        exports: list("exports")?,
        updated_ms: row.try_get("updated_ms")?,
        previous: None,
    })
}

const SELECT: &str = "SELECT t.name, t.tag, t.digest, m.kind, m.size, m.imports, m.exports, t.updated_ms \
                      FROM module_tags t JOIN modules m ON m.digest = t.digest";

impl Db {
    /// Stores a module (once per digest) and points `name:tag` at it.
    pub async fn put_module(
        &self,
        bytes: &[u8],
        info: &ModuleInfo,
        name: &str,
        tag: &str,
    ) -> Result<ModuleRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let previous: Option<String> = sqlx::query("SELECT digest FROM module_tags WHERE name = $1 AND tag = $2")
            .bind(name)
            .bind(tag)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get("digest"));
        sqlx::query(
            "INSERT INTO modules (digest, kind, size, imports, exports, bytes, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&info.digest)
        .bind(info.kind.to_string())
        .bind(info.size as i64)
        .bind(serde_json::to_string(&info.imports).unwrap_or_default())
        .bind(serde_json::to_string(&info.exports).unwrap_or_default())
        .bind(bytes)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO module_tags (name, tag, digest, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name, tag) DO UPDATE SET digest = excluded.digest, updated_ms = excluded.updated_ms",
        )
        .bind(name)
        .bind(tag)
        .bind(&info.digest)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ModuleRecord {
            name: name.into(),
            tag: tag.into(),
            digest: info.digest.clone(),
            kind: info.kind.to_string(),
            size: info.size as i64,
            imports: info.imports.clone(),
            exports: info.exports.clone(),
            updated_ms: now,
            previous: previous.filter(|p| *p != info.digest),
        })
    }

    pub async fn list_modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY t.name, t.tag"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// Every tag of one module name.
    pub async fn module_tags(&self, name: &str) -> Result<Vec<ModuleRecord>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} WHERE t.name = $1 ORDER BY t.tag"))
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// The digest `name:tag` points at.
    pub async fn module_digest(&self, name: &str, tag: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT digest FROM module_tags WHERE name = $1 AND tag = $2")
            .bind(name)
            .bind(tag)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("digest")))
    }

    /// The digest a reference points at, if it exists here.
    pub async fn resolve(&self, reference: &Reference) -> Result<Option<String>, StoreError> {
        match reference {
            Reference::Tag { name, tag } => self.module_digest(name, tag).await,
            Reference::Digest { name, digest } => {
                let known = sqlx::query("SELECT 1 FROM modules WHERE digest = $1")
                    .bind(digest)
                    .fetch_optional(&self.pool)
                    .await?;
                let named = match name {
                    Some(name) => sqlx::query("SELECT 1 FROM module_tags WHERE name = $1 LIMIT 1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?
                        .is_some(),
                    None => true,
                };
                Ok((known.is_some() && named).then(|| digest.clone()))
            }
        }
    }

    pub async fn module_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT bytes FROM modules WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("bytes")))
    }

    /// Removes the tags of a name (one tag, or all); blobs no tag points at
    /// and no run pinned are removed too. Returns the tags removed.
    pub async fn delete_module(&self, name: &str, tag: Option<&str>) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let removed = match tag {
            Some(tag) => sqlx::query("DELETE FROM module_tags WHERE name = $1 AND tag = $2")
                .bind(name)
                .bind(tag),
            None => sqlx::query("DELETE FROM module_tags WHERE name = $1").bind(name),
        }
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM modules WHERE digest NOT IN (SELECT digest FROM module_tags) \
             AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.modules LIKE '%' || modules.digest || '%')",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(removed)
    }
}
