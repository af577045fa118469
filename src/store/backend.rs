//! The two backends behind one sqlx `Any` pool: SQLite (one file in WAL
//! mode, fsync on commit), the embedded default, and PostgreSQL, which
//! several nodes share. Each has its connection set-up, its migrations
//! (`migrations/sqlite/`, `migrations/postgres/`, numbered alike) and the
//! few statements the two do not share; every other statement of the store
//! is written once, with `$1`-style placeholders, which both accept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::Executor as _;

pub type Pool = sqlx::AnyPool;
pub type Row = sqlx::any::AnyRow;
pub type Connection = sqlx::AnyConnection;
pub type Transaction = sqlx::Transaction<'static, sqlx::Any>;
/// A connection kept out of the pool for one user (the writer).
pub type Dedicated = sqlx::pool::PoolConnection<sqlx::Any>;

/// Where the store is: the embedded SQLite file of a data directory, or a
/// PostgreSQL database (`--database`, `SANDSTEP_DATABASE_URL`).
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Postgres(String),
}

impl Location {
    /// `data_dir/sandstep.db`, or the database at `url` when one is given.
    pub fn new(data_dir: &Path, url: Option<&str>) -> Result<Location, String> {
        match url.map(str::trim) {
            None | Some("") => Ok(Location::File(data_dir.join(super::DB_FILE))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_string()))
            }
            Some(url) => Err(format!(
                "--database: expected a postgres://USER@HOST:PORT/DB URL, got {}",
                redacted(url)
            )),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Location::File(_) => Kind::Sqlite,
            Location::Postgres(_) => Kind::Postgres,
        }
    }
}

/// The URL without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

/// Which backend a [`super::Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// The backend of a connection.
    pub fn of(connection: &Connection) -> Kind {
        if connection.backend_name() == "PostgreSQL" {
            Kind::Postgres
        } else {
            Kind::Sqlite
        }
    }
}

/// Opens the store at `location` and applies its migrations.
pub async fn open(location: &Location) -> Result<Pool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    match location {
        Location::File(path) => open_sqlite(path).await,
        Location::Postgres(url) => {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            // Nodes starting together: sqlx's migrator takes an advisory lock.
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Ok(pool)
        }
    }
}

/// Opens (creating) the SQLite file in WAL mode with full fsync on commit,
/// and applies `migrations/sqlite/`.
async fn open_sqlite(path: &Path) -> Result<Pool, sqlx::Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        // A connection to a local file cannot go stale as a socket can: it
        // is not pinged (a round trip to its thread) before each use.
        .test_before_acquire(false)
        // Reads map the file instead of copying pages through read(2); the
        // WAL is checkpointed every 16 MiB instead of 4 MiB, so hot pages
        // (the runs rows, index pages) are copied back once, not four times.
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection
                    .execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                         PRAGMA busy_timeout = 10000; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -16384; \
                         PRAGMA wal_autocheckpoint = 4096; PRAGMA temp_store = MEMORY;",
                    )
                    .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

/// A write transaction. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`): a deferred one that reads first fails with
/// `SQLITE_BUSY_SNAPSHOT`, without waiting, when another writer commits in
/// between. PostgreSQL's transactions lock the rows they write.
pub async fn begin(connection: &mut Connection, kind: Kind) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    match kind {
        Kind::Sqlite => sqlx::Connection::begin_with(connection, "BEGIN IMMEDIATE").await,
        Kind::Postgres => sqlx::Connection::begin(connection).await,
    }
}

/// [`begin`] on a connection from the pool.
pub async fn begin_pooled(pool: &Pool, kind: Kind) -> Result<Transaction, sqlx::Error> {
    match kind {
        Kind::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Kind::Postgres => pool.begin().await,
    }
}

/// Whether the commits of a transaction wait for the disk (the default)
/// or only for the OS: a committed transaction survives a killed process,
/// not a power cut. SQLite's setting is per connection, set outside a
/// transaction (and set back with `full` after it); PostgreSQL's is set
/// inside the transaction, for it alone.
pub async fn sync_to_disk(connection: &mut Connection, kind: Kind, full: bool) -> Result<(), sqlx::Error> {
    let statement = match (kind, full) {
        (Kind::Sqlite, true) => "PRAGMA synchronous = FULL",
        (Kind::Sqlite, false) => "PRAGMA synchronous = NORMAL",
        (Kind::Postgres, true) => return Ok(()),
        (Kind::Postgres, false) => "SET LOCAL synchronous_commit = off",
    };
    connection.execute(statement).await?;
    Ok(())
}
