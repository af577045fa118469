//! The store the tests run on. By default each data directory's SQLite
//! file; with `SANDSTEP_TEST_POSTGRES` (an administrator's URL of the
//! private cluster `scripts/test.sh` starts) every data directory gets a
//! PostgreSQL database of its own, so the same tests cover both backends.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use sandstep::store::{Db, Location};
use sha2::Digest as _;

/// The administrator's URL when the tests run on PostgreSQL.
pub fn postgres() -> Option<String> {
    std::env::var("SANDSTEP_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
}

/// The database of `data_dir` (created on first use), when on PostgreSQL.
pub fn database_url(data_dir: &Path) -> Option<String> {
    let admin = postgres()?;
    let digest = sha2::Sha256::digest(data_dir.to_string_lossy().as_bytes());
    let name = format!("t_{}", &hex::encode(digest)[..20]);
    static CREATED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut created = CREATED.lock().unwrap();
    let created = created.get_or_insert_with(HashSet::new);
    if !created.contains(&name) {
        let statement = format!("CREATE DATABASE {name}");
        let admin_url = admin.clone();
        // A runtime of its own: callers may be inside one, or in none.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    use sqlx::Connection as _;
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                    sqlx::query(&statement).execute(&mut admin).await.unwrap();
                    admin.close().await.unwrap();
                })
        })
        .join()
        .expect("the test database is created");
        created.insert(name.clone());
    }
    let mut url = reqwest::Url::parse(&admin).expect("SANDSTEP_TEST_POSTGRES is a URL");
    url.set_path(&name);
    Some(url.to_string())
}

/// Where the store of `data_dir` is.
pub fn location(data_dir: &Path) -> Location {
    Location::new(data_dir, database_url(data_dir).as_deref()).expect("a postgres URL")
}

/// The store of `data_dir`, opened.
pub async fn open(data_dir: &Path) -> Db {
    Db::connect(&location(data_dir)).await.unwrap()
}

/// Points a `sandstep` command at the store of `data_dir`.
pub fn on<'c>(command: &'c mut Command, data_dir: &Path) -> &'c mut Command {
    command.env("SANDSTEP_DATA_DIR", data_dir);
    if let Some(url) = database_url(data_dir) {
        command.env("SANDSTEP_DATABASE_URL", url);
    }
    command
}

/// A pool on the store of `data_dir`, for tests that read or write rows
/// directly, as an operator (or a bug) could.
pub async fn pool(data_dir: &Path) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = match database_url(data_dir) {
        Some(url) => url,
        None => format!("sqlite://{}", data_dir.join(sandstep::store::DB_FILE).display()),
    };
    sqlx::AnyPool::connect(&url).await.unwrap()
}
