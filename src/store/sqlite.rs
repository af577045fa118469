//! The SQLite backend: connection set-up (WAL, fsync on commit, foreign
//! keys), write transactions, and the names of its driver types.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub type Pool = sqlx::SqlitePool;
pub type Row = sqlx::sqlite::SqliteRow;
pub type Connection = sqlx::SqliteConnection;
pub type Transaction = sqlx::Transaction<'static, sqlx::Sqlite>;
/// A connection kept out of the pool for one user (the writer).
pub type Dedicated = sqlx::pool::PoolConnection<sqlx::Sqlite>;

/// Opens (creating) `data_dir/sandstep.db` in WAL mode with full fsync on
/// commit, and applies `migrations/sqlite/`.
pub async fn open(data_dir: &Path) -> Result<Pool, sqlx::Error> {
    std::fs::create_dir_all(data_dir).map_err(sqlx::Error::Io)?;
    let url = format!("sqlite://{}", data_dir.join(super::DB_FILE).display());
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        // Reads map the file instead of copying pages through read(2):
        // after every commit, other connections revalidate their pages.
        .pragma("mmap_size", "268435456")
        .pragma("cache_size", "-16384")
        // Checkpoint the WAL every 16 MiB instead of 4 MiB: hot pages (the
        // runs rows, index pages) are copied back once, not four times.
        .pragma("wal_autocheckpoint", "4096");
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

/// A write transaction that takes the write lock at once (`BEGIN
/// IMMEDIATE`): a deferred one that reads first fails with
/// `SQLITE_BUSY_SNAPSHOT`, without waiting, when another writer commits in
/// between.
pub async fn begin_write(pool: &Pool) -> Result<Transaction, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// [`begin_write`] on a dedicated connection, whose page cache stays warm
/// because it is the one writing.
pub async fn begin_dedicated(connection: &mut Dedicated) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
    sqlx::Connection::begin_with(&mut **connection, "BEGIN IMMEDIATE").await
}

/// Whether commits on `connection` wait for the disk (`FULL`, the default)
/// or only for the OS (`NORMAL`: a committed transaction survives a killed
/// process, not a power cut). Set outside a transaction.
pub async fn sync_to_disk(connection: &mut Dedicated, full: bool) -> Result<(), sqlx::Error> {
    let pragma = if full {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    };
    sqlx::query(pragma).execute(&mut **connection).await?;
    Ok(())
}
