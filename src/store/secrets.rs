//! Stored secrets: names with their encrypted values. Encryption and
//! decryption are the service's (`service::secrets`); this module only
//! keeps the bytes.

use serde::Serialize;
use sqlx::Row as _;

use super::{now_ms, Db, StoreError};

/// A secret as listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SecretEntry {
    pub name: String,
    /// When the value was last set, in milliseconds since the epoch.
    pub updated_ms: i64,
}

/// A secret as stored: its nonce and ciphertext.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Db {
    /// Stores (or replaces) a sealed secret.
    pub async fn put_secret(&self, sealed: &SealedSecret) -> Result<SecretEntry, StoreError> {
        let updated_ms = now_ms();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO secrets (name, nonce, ciphertext, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             updated_ms = excluded.updated_ms",
        )
        .bind(&sealed.name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(updated_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SecretEntry {
            name: sealed.name.clone(),
            updated_ms,
        })
    }

    /// Names and update times, by name.
    pub async fn list_secrets(&self) -> Result<Vec<SecretEntry>, StoreError> {
        let rows = sqlx::query("SELECT name, updated_ms FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| SecretEntry {
                name: r.get("name"),
                updated_ms: r.get("updated_ms"),
            })
            .collect())
    }

    /// Every sealed secret, to open when the process starts.
    pub async fn sealed_secrets(&self) -> Result<Vec<SealedSecret>, StoreError> {
        let rows = sqlx::query("SELECT name, nonce, ciphertext FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| SealedSecret {
                name: r.get("name"),
                nonce: r.get("nonce"),
                ciphertext: r.get("ciphertext"),
            })
            .collect())
    }

    /// Removes a secret; `false` when there was none of that name.
    pub async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
