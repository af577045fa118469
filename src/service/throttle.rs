//! The service's [`Throttle`].
//!
//! On PostgreSQL the books are in the store, asked through the
//! group-commit writer: every node sees every slot. Slots are given back
//! without waiting for the commit: the release rides with the next request
//! the writer takes (the run's next append, another run's ask), and every
//! request queued after it sees it. Releases on this node wake its waiting
//! runs at once (runs of other processes see them at their next poll); a
//! release lost with a crash is made good when the run ends or is picked up
//! again.
//!
//! On SQLite this process is the only one running the store's runs, so the
//! books are kept in memory and an ask costs no transaction. Slots held die
//! with the process, as they do on PostgreSQL (a run picked up again asks
//! anew). A rate-limited start is recorded in the store without waiting:
//! it commits with whatever the writer takes next, at the latest with the
//! append of the attempt it let start; the first ask for a key after a
//! restart reads the key's starts still in their window, so a rate holds
//! across restarts. (An attempt that ran but whose outcome a crash lost may
//! leave no start behind: it runs again and records one then.)

use std::collections::{HashMap, HashSet};

use crate::run::cache::BoxFuture;
use crate::run::throttle::{Answer, Ask, MemoryThrottle, Throttle};
use crate::store::writer::Writer;
use crate::store::{Db, Kind};

pub struct StoreThrottle {
    writer: Writer,
    released: tokio::sync::watch::Sender<u64>,
    /// SQLite: the books in memory.
    memory: Option<Books>,
}

/// Books kept in memory, over the store's recorded starts.
struct Books {
    books: MemoryThrottle,
    db: Db,
    /// Rate-limited keys whose recorded starts were read.
    seen: tokio::sync::Mutex<HashSet<(String, String)>>,
}

impl StoreThrottle {
    pub fn new(writer: Writer, db: Db) -> Self {
        let memory = (db.kind() == Kind::Sqlite).then(|| Books {
            books: MemoryThrottle::default(),
            db,
            seen: Default::default(),
        });
        StoreThrottle {
            writer,
            released: tokio::sync::watch::Sender::new(0),
            memory,
        }
    }

    fn give_back(&self, holders: Vec<String>, runs: Vec<String>) -> Result<(), String> {
        let outcome = self.writer.release_later(holders, runs).map_err(|e| e.to_string());
        self.released.send_modify(|n| *n += 1);
        outcome
    }
}

impl Books {
    /// Reads the recorded starts of rate-limited keys not seen since this
    /// process started, decides, and records the starts granted.
    async fn acquire(&self, writer: &Writer, asks: Vec<Ask>) -> Result<Vec<Answer>, String> {
        let Books { books, db, seen } = self;
        let windows: HashMap<(String, String), u64> = asks
            .iter()
            .flat_map(|a| &a.claims)
            .filter_map(|c| c.rate.map(|(_, per)| ((c.scope.clone(), c.key.clone()), per)))
            .collect();
        if !windows.is_empty() {
            let mut seen = seen.lock().await;
            for ((scope, key), per) in &windows {
                if seen.contains(&(scope.clone(), key.clone())) {
                    continue;
                }
                let now = crate::run::event::now_ms();
                let starts = db
                    .throttle_starts(scope, key, now.saturating_sub(*per))
                    .await
                    .map_err(|e| e.to_string())?;
                books.seed(scope, key, &starts);
                seen.insert((scope.clone(), key.clone()));
            }
        }
        let (answers, granted) = books.decide_now(&asks, crate::run::event::now_ms());
        if !granted.starts.is_empty() {
            let starts = granted
                .starts
                .into_iter()
                .map(|(scope, key, at)| {
                    let per = windows.get(&(scope.clone(), key.clone())).copied().unwrap_or(0);
                    (scope, key, at, per)
                })
                .collect();
            writer.record_starts_later(starts).map_err(|e| e.to_string())?;
        }
        Ok(answers)
    }
}

impl Throttle for StoreThrottle {
    /// Decided by the clock of the moment the books are consulted (the
    /// writer's, on PostgreSQL), not the asker's: a start is recorded when
    /// it is granted.
    fn acquire(&self, asks: Vec<Ask>, _now_ms: u64) -> BoxFuture<'_, Result<Vec<Answer>, String>> {
        Box::pin(async move {
            match &self.memory {
                Some(books) => books.acquire(&self.writer, asks).await,
                None => self.writer.throttle(asks).await.map_err(|e| e.to_string()),
            }
        })
    }

    fn release(&self, holders: Vec<String>) -> BoxFuture<'_, Result<(), String>> {
        match &self.memory {
            Some(memory) => memory.books.release(holders),
            None => Box::pin(std::future::ready(self.give_back(holders, Vec::new()))),
        }
    }

    fn release_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        match &self.memory {
            Some(memory) => memory.books.release_run(run_id),
            None => Box::pin(std::future::ready(self.give_back(Vec::new(), vec![run_id.to_string()]))),
        }
    }

    fn releases(&self) -> tokio::sync::watch::Receiver<u64> {
        match &self.memory {
            Some(memory) => memory.books.releases(),
            None => self.released.subscribe(),
        }
    }

    fn released_elsewhere(&self) {
        self.released.send_modify(|n| *n += 1);
    }
}
