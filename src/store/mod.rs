//! The durable store: modules, workflow versions, runs with their events,
//! ownership and inbox. Every SQL statement and every sqlx type of the
//! crate lives under this module; the rest of the code calls [`Db`]'s
//! methods and sees [`StoreError`].
//!
//! What is true today: there is one backend, SQLite (one file in WAL mode,
//! fsync on commit). Its connection set-up, its write transactions
//! (`BEGIN IMMEDIATE`) and its row type are in [`sqlite`], and its
//! migrations in `migrations/sqlite/`. The statements in [`modules`],
//! [`workflows`], [`runs`] and [`inbox`] are plain SQL that PostgreSQL also
//! accepts except for their `?` placeholders (PostgreSQL numbers them) and
//! the inbox's `AUTOINCREMENT` key; the row type is the alias
//! [`sqlite::Row`]. A PostgreSQL backend is a second module beside
//! [`sqlite`] with its own pool, placeholders and migrations, chosen when
//! [`Db`] is opened; nothing outside this module changes.
//!
//! - [`writer`]: group commit. Starts and appends from every run share
//!   transactions.
//! - [`runs`]: runs, their events, the conditional append and ownership.
//! - [`inbox`]: requests to a run (cancel, posted events) as rows its owner
//!   consumes.
//! - [`events`]: posted events and the waits they resume.
//! - [`triggers`]: schedules and event topics that start runs.
//! - [`secrets`]: secrets set through the API, sealed.
//! - [`cache`]: the step result cache's entries.
//! - [`modules`], [`workflows`]: one file per table family.

pub mod append;
pub mod cache;
pub mod events;
pub mod inbox;
pub mod modules;
pub mod nodes;
pub mod runs;
pub mod secrets;
mod sqlite;
pub mod throttle;
pub mod triggers;
pub mod usage;
pub mod workflows;
pub mod writer;

use std::path::Path;

/// A store failure (never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a statement.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row cannot be decoded: surfaced, never skipped.
    #[error("run {run_id}: stored {what} cannot be decoded: {message}")]
    Corrupt {
        run_id: String,
        what: String,
        message: String,
    },
    /// The group-commit writer's transaction failed; nothing of it was written.
    #[error("batch not committed: {0}")]
    NotCommitted(String),
    /// The group-commit writer is gone (the process is stopping).
    #[error("the store writer stopped")]
    WriterStopped,
}

/// The database file inside a data directory.
pub const DB_FILE: &str = "sandstep.db";

/// The store. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct Db {
    pool: sqlite::Pool,
}

impl Db {
    /// Opens (creating) `data_dir/sandstep.db` and applies migrations.
    pub async fn open(data_dir: &Path) -> Result<Db, StoreError> {
        Ok(Db {
            pool: sqlite::open(data_dir).await?,
        })
    }

    /// The store of `data_dir` if it has one (local commands never create it
    /// just to find it empty).
    pub async fn open_existing(data_dir: &Path) -> Result<Option<Db>, StoreError> {
        if data_dir.join(DB_FILE).is_file() {
            Db::open(data_dir).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// A write transaction holding the write lock from its first statement.
    pub(crate) async fn write(&self) -> Result<sqlite::Transaction, sqlx::Error> {
        sqlite::begin_write(&self.pool).await
    }

    /// A connection taken out of the pool for the group-commit writer.
    pub(crate) async fn dedicated(&self) -> Result<sqlite::Dedicated, sqlx::Error> {
        self.pool.acquire().await
    }

    /// Whether the database answers (`/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

pub(crate) fn now_ms() -> i64 {
    crate::run::event::now_ms() as i64
}
