//! Keyed concurrency and rate limits (`throttle:`) as the executor sees
//! them: before an attempt of a throttled step starts, its unit asks for a
//! slot under each of its claims (the workflow's key, the step's key); it
//! starts only when every claim has room, and gives its slots back when the
//! attempt ends. Where the books are kept is the host's choice: in memory
//! for a local run ([`MemoryThrottle`]), in the store for a server, so the
//! limits hold across restarts and nodes. Both decide with [`decide`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::cache::BoxFuture;

/// One limit an attempt is held to: `scope` is the workflow (`orders`) or
/// a step of it (`orders/charge`); `key` is the rendered key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    pub concurrency: Option<u32>,
    /// `(limit, per_ms)`.
    pub rate: Option<(u32, u64)>,
}

/// A unit's request for slots under all of its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The unit: `<run id>/<step>` or `<run id>/<step>/<item>`. A holder
    /// asking again for a slot it holds (after a restart) keeps it.
    pub holder: String,
    pub run_id: String,
    pub claims: Vec<Claim>,
}

/// The answer to one [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Granted,
    /// Not now: ask again when a slot is given back, or at `retry_at_ms`
    /// (a rate window moving on).
    Wait {
        retry_at_ms: Option<u64>,
    },
}

/// One key's book: who holds its slots, and when recent attempts started
/// (ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    pub holders: HashSet<String>,
    pub starts: Vec<u64>,
}

/// A grant's changes to the books, for a store to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Granted {
    /// `(scope, key, holder, run_id)`.
    pub holds: Vec<(String, String, String, String)>,
    /// `(scope, key, at_ms)`.
    pub starts: Vec<(String, String, u64)>,
}

/// Answers `asks` in order against `books` (keyed by scope and key; a
/// missing book is empty), updating the books with each grant, so later
/// asks see earlier grants.
pub fn decide(books: &mut HashMap<(String, String), Book>, asks: &[Ask], now_ms: u64) -> (Vec<Answer>, Granted) {
    let mut granted = Granted::default();
    let answers = asks
        .iter()
        .map(|ask| {
            let mut blocked = false;
            let mut retry_at: Option<u64> = None;
            for claim in &ask.claims {
                let book = books.entry((claim.scope.clone(), claim.key.clone())).or_default();
                if book.holders.contains(&ask.holder) {
                    continue; // held since before a restart
                }
                if claim.concurrency.is_some_and(|c| book.holders.len() >= c as usize) {
                    blocked = true;
                }
                if let Some((limit, per_ms)) = claim.rate {
                    let window: Vec<u64> = book.starts.iter().copied().filter(|&at| at + per_ms > now_ms).collect();
                    if window.len() >= limit as usize {
                        // The start that leaves the window first makes room.
                        let at = window[window.len() - limit as usize] + per_ms;
                        retry_at = Some(retry_at.map_or(at, |r| r.max(at)));
                    }
                }
            }
            if blocked {
                return Answer::Wait { retry_at_ms: None };
            }
            if retry_at.is_some() {
                return Answer::Wait { retry_at_ms: retry_at };
            }
            for claim in &ask.claims {
                let book = books.entry((claim.scope.clone(), claim.key.clone())).or_default();
                if !book.holders.insert(ask.holder.clone()) {
                    continue;
                }
                if claim.rate.is_some() {
                    book.starts.push(now_ms);
                    granted.starts.push((claim.scope.clone(), claim.key.clone(), now_ms));
                }
                granted.holds.push((
                    claim.scope.clone(),
                    claim.key.clone(),
                    ask.holder.clone(),
                    ask.run_id.clone(),
                ));
            }
            Answer::Granted
        })
        .collect();
    (answers, granted)
}

/// Where the books are kept.
pub trait Throttle: Send + Sync {
    /// Answers each ask, in order (fairness is the asker's order).
    fn acquire(&self, asks: Vec<Ask>, now_ms: u64) -> BoxFuture<'_, Result<Vec<Answer>, String>>;

    /// Gives back every slot these holders hold.
    fn release(&self, holders: Vec<String>) -> BoxFuture<'_, Result<(), String>>;

    /// Gives back every slot a run's units hold (the run ended, or is picked
    /// up again and its units ask anew).
    fn release_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), String>>;

    /// Counts releases: a waiting run asks again when it moves.
    fn releases(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Another process gave slots back: waiting runs ask again.
    fn released_elsewhere(&self) {}
}

/// Books in process memory: limits across the runs of one process.
pub struct MemoryThrottle {
    books: Mutex<MemoryBooks>,
    released: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct MemoryBooks {
    books: HashMap<(String, String), Book>,
    /// What each holder holds, and each run's holders.
    held: HashMap<String, Vec<(String, String)>>,
    runs: HashMap<String, HashSet<String>>,
}

impl Default for MemoryThrottle {
    fn default() -> Self {
        MemoryThrottle {
            books: Mutex::default(),
            released: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl MemoryBooks {
    fn release(&mut self, holder: &str) {
        for key in self.held.remove(holder).unwrap_or_default() {
            if let Some(book) = self.books.get_mut(&key) {
                book.holders.remove(holder);
                if book.holders.is_empty() && book.starts.is_empty() {
                    self.books.remove(&key);
                }
            }
        }
    }
}

impl MemoryThrottle {
    /// Answers `asks` now, and says what was granted (for a store that
    /// records rate-limited starts).
    pub fn decide_now(&self, asks: &[Ask], now_ms: u64) -> (Vec<Answer>, Granted) {
        let mut books = self.books.lock().expect("throttle books");
        // Starts older than every window asked about are forgotten.
        for ask in asks {
            for claim in &ask.claims {
                if let (Some((_, per)), Some(book)) = (
                    claim.rate,
                    books.books.get_mut(&(claim.scope.clone(), claim.key.clone())),
                ) {
                    book.starts.retain(|&at| at + per > now_ms);
                }
            }
        }
        let (answers, granted) = decide(&mut books.books, asks, now_ms);
        for (scope, key, holder, run_id) in &granted.holds {
            books.runs.entry(run_id.clone()).or_default().insert(holder.clone());
            books
                .held
                .entry(holder.clone())
                .or_default()
                .push((scope.clone(), key.clone()));
        }
        (answers, granted)
    }

    /// Adds starts recorded elsewhere (before a restart) to a key's book.
    pub fn seed(&self, scope: &str, key: &str, starts: &[u64]) {
        if starts.is_empty() {
            return;
        }
        let mut books = self.books.lock().expect("throttle books");
        let book = books.books.entry((scope.to_string(), key.to_string())).or_default();
        book.starts.extend_from_slice(starts);
        book.starts.sort_unstable();
    }
}

impl Throttle for MemoryThrottle {
    fn acquire(&self, asks: Vec<Ask>, now_ms: u64) -> BoxFuture<'_, Result<Vec<Answer>, String>> {
        Box::pin(std::future::ready(Ok(self.decide_now(&asks, now_ms).0)))
    }

    fn release(&self, holders: Vec<String>) -> BoxFuture<'_, Result<(), String>> {
        {
            let mut books = self.books.lock().expect("throttle books");
            for holder in &holders {
                books.release(holder);
            }
        }
        self.released.send_modify(|n| *n += 1);
        Box::pin(std::future::ready(Ok(())))
    }

    fn release_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        {
            let mut books = self.books.lock().expect("throttle books");
            for holder in books.runs.remove(run_id).unwrap_or_default() {
                books.release(&holder);
            }
        }
        self.released.send_modify(|n| *n += 1);
        Box::pin(std::future::ready(Ok(())))
    }

    fn releases(&self) -> tokio::sync::watch::Receiver<u64> {
        self.released.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(holder: &str, key: &str, concurrency: Option<u32>, rate: Option<(u32, u64)>) -> Ask {
        Ask {
            holder: holder.into(),
            run_id: "r".into(),
            claims: vec![Claim {
                scope: "w".into(),
                key: key.into(),
                concurrency,
                rate,
            }],
        }
    }

    #[test]
    fn concurrency_is_per_key_and_a_holder_keeps_its_slot() {
        let mut books = HashMap::new();
        let asks = [
            ask("a1", "A", Some(2), None),
            ask("a2", "A", Some(2), None),
            ask("a3", "A", Some(2), None),
            ask("b1", "B", Some(2), None),
            ask("a1", "A", Some(2), None),
        ];
        let (answers, granted) = decide(&mut books, &asks, 0);
        use Answer::*;
        assert_eq!(
            answers,
            [Granted, Granted, Wait { retry_at_ms: None }, Granted, Granted]
        );
        assert_eq!(granted.holds.len(), 3);
    }

    #[test]
    fn rate_windows_slide() {
        let mut books = HashMap::new();
        let limit = Some((2, 1000));
        let (answers, _) = decide(
            &mut books,
            &[ask("1", "A", None, limit), ask("2", "A", None, limit)],
            100,
        );
        assert_eq!(answers, [Answer::Granted, Answer::Granted]);
        let (answers, _) = decide(&mut books, &[ask("3", "A", None, limit)], 500);
        assert_eq!(
            answers,
            [Answer::Wait {
                retry_at_ms: Some(1100)
            }]
        );
        let (answers, granted) = decide(&mut books, &[ask("3", "A", None, limit)], 1100);
        assert_eq!(answers, [Answer::Granted]);
        assert_eq!(granted.starts, [("w".to_string(), "A".to_string(), 1100)]);
    }
}
