//! The durable store: modules, workflow versions, runs with their events,
//! ownership and inbox. Every SQL statement and every sqlx type of the
//! crate lives under this module; the rest of the code calls [`Db`]'s
//! methods and sees [`StoreError`].
//!
//! Two backends, chosen when [`Db`] is opened ([`backend`]): SQLite, one
//! file in a data directory (the embedded default), and PostgreSQL, which
//! several nodes share. Both run behind sqlx's `Any` driver and the same
//! statements, written with `$1`-style placeholders ([`sql`] builds the
//! dynamic ones); the few that differ (transaction start, disk sync,
//! claiming with `SKIP LOCKED`, throttle locks) branch on [`Db::kind`].
//! Migrations are numbered alike in `migrations/sqlite/` and
//! `migrations/postgres/`.
//!
//! - [`writer`]: group commit. Starts and appends from every run share
//!   transactions.
//! - [`runs`]: runs, their events and the conditional append.
//! - [`claims`]: which node executes each unfinished run (leases, fences).
//! - [`notify`]: wake-ups between nodes on PostgreSQL.
//! - [`inbox`]: requests to a run (cancel, posted events) as rows its owner
//!   consumes.
//! - [`events`]: posted events and the waits they resume.
//! - [`triggers`]: schedules and event topics that start runs.
//! - [`secrets`]: secrets set through the API, sealed.
//! - [`cache`]: the step result cache's entries.
//! - [`summary`]: step counts for lists of runs.
//! - [`modules`], [`workflows`]: one file per table family.

pub mod append;
pub mod backend;
pub mod cache;
pub mod chain;
pub mod claims;
pub mod events;
pub mod floor;
pub mod inbox;
pub mod modules;
pub mod nodes;
pub mod notify;
pub mod runs;
pub mod secrets;
mod sql;
pub mod stats;
pub mod summary;
pub mod throttle;
pub mod triggers;
pub mod usage;
pub mod workflows;
pub mod writer;

use std::path::Path;

pub use backend::{Kind, Location};

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

impl StoreError {
    /// A deadlock or serialization failure: PostgreSQL rolled the
    /// transaction back, and trying it again may well succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => {
                matches!(error.code().as_deref(), Some("40P01") | Some("40001"))
            }
            _ => false,
        }
    }
}

/// The database file inside a data directory.
pub const DB_FILE: &str = "sandstep.db";

/// The store. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct Db {
    pool: backend::Pool,
    kind: Kind,
    location: std::sync::Arc<Location>,
}

impl Db {
    /// Opens (creating) the store at `location` and applies migrations.
    pub async fn connect(location: &Location) -> Result<Db, StoreError> {
        Ok(Db {
            pool: backend::open(location).await?,
            kind: location.kind(),
            location: std::sync::Arc::new(location.clone()),
        })
    }

    /// Opens (creating) `data_dir/sandstep.db` and applies migrations.
    pub async fn open(data_dir: &Path) -> Result<Db, StoreError> {
        Db::connect(&Location::File(data_dir.join(DB_FILE))).await
    }

    /// The store at `location` if it has one: a SQLite file that does not
    /// exist is not created (local commands never create it just to find it
    /// empty); a PostgreSQL database always exists.
    pub async fn open_existing(location: &Location) -> Result<Option<Db>, StoreError> {
        match location {
            Location::File(path) if !path.is_file() => Ok(None),
            _ => Db::connect(location).await.map(Some),
        }
    }

    /// Which backend this store runs on.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where this store is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// A write transaction (on SQLite, holding the write lock from its
    /// first statement).
    pub(crate) async fn write(&self) -> Result<backend::Transaction, sqlx::Error> {
        backend::begin_pooled(&self.pool, self.kind).await
    }

    /// A connection taken out of the pool for the group-commit writer.
    pub(crate) async fn dedicated(&self) -> Result<backend::Dedicated, sqlx::Error> {
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
