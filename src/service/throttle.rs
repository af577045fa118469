//! The service's [`Throttle`]: books in the store, asked through the
//! group-commit writer. Slots are given back without waiting for the
//! commit: the release rides with the next request the writer takes (the
//! run's next append, another run's ask), and every request queued after
//! it sees it. Releases on this node wake its waiting runs at once (runs of
//! other processes see them at their next poll); a release lost with a
//! crash is made good when the run ends or is picked up again.

use crate::run::cache::BoxFuture;
use crate::run::throttle::{Answer, Ask, Throttle};
use crate::store::writer::Writer;

pub struct StoreThrottle {
    writer: Writer,
    released: tokio::sync::watch::Sender<u64>,
}

impl StoreThrottle {
    pub fn new(writer: Writer) -> Self {
        StoreThrottle {
            writer,
            released: tokio::sync::watch::Sender::new(0),
        }
    }

    fn give_back(&self, holders: Vec<String>, runs: Vec<String>) -> Result<(), String> {
        let outcome = self.writer.release_later(holders, runs).map_err(|e| e.to_string());
        self.released.send_modify(|n| *n += 1);
        outcome
    }
}

impl Throttle for StoreThrottle {
    /// Decided by the writer's clock when it takes the asks, not the
    /// asker's: a start is recorded when it is granted.
    fn acquire(&self, asks: Vec<Ask>, _now_ms: u64) -> BoxFuture<'_, Result<Vec<Answer>, String>> {
        Box::pin(async move { self.writer.throttle(asks).await.map_err(|e| e.to_string()) })
    }

    fn release(&self, holders: Vec<String>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(self.give_back(holders, Vec::new())))
    }

    fn release_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(self.give_back(Vec::new(), vec![run_id.to_string()])))
    }

    fn releases(&self) -> tokio::sync::watch::Receiver<u64> {
        self.released.subscribe()
    }

    fn released_elsewhere(&self) {
        self.released.send_modify(|n| *n += 1);
    }
}
