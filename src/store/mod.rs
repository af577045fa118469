//! The durable store: one SQLite file (WAL) holding modules, workflow
//! versions, runs and their events. Queries are plain SQL shared with
//! PostgreSQL where possible, through sqlx, so a second backend is a second
//! pool, not a rewrite.
//!
//! - [`writer`]: the group-commit event writer behind the server's journal.
//! - [`modules`], [`workflows`], [`runs`]: one file per table family.

pub mod modules;
pub mod runs;
pub mod workflows;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// A store error: the database failed (never the client's fault).
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct DbError(#[from] pub sqlx::Error);

/// The database file inside a data directory.
pub const DB_FILE: &str = "sandstep.db";

#[derive(Clone)]
pub struct Db {
    pub pool: SqlitePool,
}

impl Db {
    /// Opens (creating) `data_dir/sandstep.db` in WAL mode with full fsync on
    /// commit, and applies migrations.
    pub async fn open(data_dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(data_dir).map_err(|e| DbError(sqlx::Error::Io(e)))?;
        let url = format!("sqlite://{}", data_dir.join(DB_FILE).display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| DbError(e.into()))?;
        Ok(Db { pool })
    }
}

impl Db {
    /// The store of `data_dir` if it has one (local commands never create it
    /// just to find it empty).
    pub async fn open_existing(data_dir: &Path) -> Result<Option<Db>, DbError> {
        if data_dir.join(DB_FILE).is_file() {
            Db::open(data_dir).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// A write transaction that takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred one that reads first fails with
    /// `SQLITE_BUSY_SNAPSHOT`, without waiting, when another writer commits
    /// in between.
    pub(crate) async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

pub(crate) fn now_ms() -> i64 {
    crate::run::event::now_ms() as i64
}
