//! Group commit: run starts (single or batched), every run's appends,
//! posted events and `throttle:` asks and releases go to one writer task, which commits whatever has queued up in a single
//! transaction (one fsync) and then answers each caller. Durability costs
//! one commit per batch, not one per request.
//!
//! Each request keeps its own outcome inside the shared transaction: a
//! refused append (a stale owner or sequence) writes nothing and fails
//! alone, the others commit.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::events::{NewEvent, Posted};
use super::notify::Signal;
use super::runs::{Append, AppendRefused, Inserted, NewRun};
use super::throttle::Start;
use super::{Db, Kind, StoreError};
use crate::run::throttle::{Answer, Ask};

/// Events (or new runs) per transaction at most, before the next batch.
const MAX_BATCH: usize = 4096;
/// Tries of a batch rolled back by a deadlock or serialization failure.
const RETRIES: u32 = 3;

/// Why an append was not committed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Refused(#[from] AppendRefused),
    #[error("{0}")]
    Store(String),
}

enum Request {
    Start {
        runs: Vec<NewRun>,
        /// Owned by this node, or left for any node to claim.
        owned: bool,
        done: oneshot::Sender<Result<Vec<Inserted>, String>>,
    },
    Append {
        append: Append,
        done: oneshot::Sender<Result<(), AppendError>>,
    },
    Post {
        event: NewEvent,
        done: oneshot::Sender<Result<Posted, String>>,
    },
    /// `throttle:` slots asked for, in order.
    Throttle {
        asks: Vec<Ask>,
        done: oneshot::Sender<Result<Vec<Answer>, String>>,
    },
    /// `throttle:` slots given back: by holder, and every slot of runs;
    /// and rate-limited starts granted in memory, to record.
    Release {
        holders: Vec<String>,
        runs: Vec<String>,
        starts: Vec<Start>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

impl Request {
    fn size(&self) -> usize {
        match self {
            Request::Start { runs, .. } => runs.len(),
            Request::Append { append, .. } => append.events.len(),
            Request::Post { .. } => 1,
            Request::Throttle { asks, .. } => asks.len(),
            Request::Release {
                holders, runs, starts, ..
            } => holders.len() + runs.len() + starts.len(),
        }
    }
}

/// The handle runs and the service commit through. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    node: std::sync::Arc<str>,
    requests: mpsc::UnboundedSender<Request>,
    committed: std::sync::Arc<Counts>,
}

/// What the writer committed so far (benchmarks set floors by it).
#[derive(Default)]
struct Counts {
    commits: AtomicU64,
    events: AtomicU64,
    started: AtomicU64,
    moved: AtomicU64,
}

impl Writer {
    /// Starts the writer task on `db` for the node `node`.
    pub fn start(db: Db, node: &str) -> Writer {
        let (requests, mut incoming) = mpsc::unbounded_channel::<Request>();
        let owner: std::sync::Arc<str> = node.into();
        let task_owner = owner.clone();
        let committed = std::sync::Arc::new(Counts::default());
        let counts = committed.clone();
        tokio::spawn(async move {
            let mut connection = None;
            while let Some(first) = incoming.recv().await {
                let mut count = first.size();
                let mut batch = vec![first];
                while count < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(more) => {
                            count += more.size();
                            batch.push(more);
                        }
                        Err(_) => break,
                    }
                }
                commit(&db, &mut connection, &task_owner, batch, &counts).await;
            }
        });
        Writer {
            node: owner,
            requests,
            committed,
        }
    }

    /// Transactions, event rows, new and moved run rows committed so far.
    pub fn committed(&self) -> super::floor::Committed {
        super::floor::Committed {
            commits: self.committed.commits.load(Ordering::Relaxed),
            events: self.committed.events.load(Ordering::Relaxed),
            started: self.committed.started.load(Ordering::Relaxed),
            moved: self.committed.moved.load(Ordering::Relaxed),
        }
    }

    /// The node this writer stores new runs for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Stores new runs (owned by this node, or when not `owned` by nobody,
    /// for any node to claim) in one transaction shared with concurrent
    /// requests; resolves once durable.
    pub async fn start_runs(&self, runs: Vec<NewRun>, owned: bool) -> Result<Vec<Inserted>, StoreError> {
        let (done, committed) = oneshot::channel();
        self.requests
            .send(Request::Start { runs, owned, done })
            .map_err(|_| StoreError::WriterStopped)?;
        committed
            .await
            .map_err(|_| StoreError::WriterStopped)?
            .map_err(StoreError::NotCommitted)
    }

    /// Stores a posted event with its inbox messages; resolves once durable.
    pub async fn post_event(&self, event: NewEvent) -> Result<Posted, StoreError> {
        let (done, committed) = oneshot::channel();
        self.requests
            .send(Request::Post { event, done })
            .map_err(|_| StoreError::WriterStopped)?;
        committed
            .await
            .map_err(|_| StoreError::WriterStopped)?
            .map_err(StoreError::NotCommitted)
    }

    /// Answers `throttle:` asks in order as of the moment the writer
    /// decides (a grant's start is that moment), recording the grants;
    /// resolves once committed.
    pub async fn throttle(&self, asks: Vec<Ask>) -> Result<Vec<Answer>, StoreError> {
        let (done, committed) = oneshot::channel();
        self.requests
            .send(Request::Throttle { asks, done })
            .map_err(|_| StoreError::WriterStopped)?;
        committed
            .await
            .map_err(|_| StoreError::WriterStopped)?
            .map_err(StoreError::NotCommitted)
    }

    /// Gives back `throttle:` slots of `holders` and of every unit of `runs`,
    /// without waiting: the release commits with whatever the writer takes
    /// next (an append, an ask), and every request sent later sees it.
    pub fn release_later(&self, holders: Vec<String>, runs: Vec<String>) -> Result<(), StoreError> {
        self.later(holders, runs, Vec::new())
    }

    /// Records rate-limited starts granted outside the store (the books a
    /// single SQLite node keeps in memory), without waiting: they commit
    /// with whatever the writer takes next, at the latest with the append
    /// of the attempt they let start.
    pub fn record_starts_later(&self, starts: Vec<Start>) -> Result<(), StoreError> {
        self.later(Vec::new(), Vec::new(), starts)
    }

    fn later(&self, holders: Vec<String>, runs: Vec<String>, starts: Vec<Start>) -> Result<(), StoreError> {
        let (done, _) = oneshot::channel();
        self.requests
            .send(Request::Release {
                holders,
                runs,
                starts,
                done,
            })
            .map_err(|_| StoreError::WriterStopped)
    }

    /// Commits one conditional append; resolves once durable or refused.
    pub async fn append(&self, append: Append) -> Result<(), AppendError> {
        let (done, committed) = oneshot::channel();
        self.requests
            .send(Request::Append { append, done })
            .map_err(|_| AppendError::Store(StoreError::WriterStopped.to_string()))?;
        committed
            .await
            .map_err(|_| AppendError::Store(StoreError::WriterStopped.to_string()))?
    }
}

async fn commit(
    db: &Db,
    connection: &mut Option<super::backend::Dedicated>,
    node: &str,
    batch: Vec<Request>,
    counts: &Counts,
) {
    let mut starts = Vec::new();
    let mut appends = Vec::new();
    let mut posts = Vec::new();
    let mut throttles = Vec::new();
    let mut releases = Vec::new();
    for request in batch {
        match request {
            Request::Start { runs, owned, done } => starts.push((runs, owned, done)),
            Request::Append { append, done } => appends.push((append, done)),
            Request::Post { event, done } => posts.push((event, done)),
            Request::Throttle { asks, done } => throttles.push((asks, done)),
            Request::Release {
                holders,
                runs,
                starts,
                done,
            } => releases.push((holders, runs, starts, done)),
        }
    }
    // A deadlock or serialization failure (PostgreSQL, nodes writing the
    // same rows) rolled everything back: the batch is tried again.
    let mut tries = 0;
    let result = loop {
        let outcome = transaction(db, connection, node, &starts, &appends, &posts, &throttles, &releases).await;
        match outcome {
            Err(error) if tries < RETRIES && error.is_transient() => {
                tries += 1;
                tracing::warn!(%error, tries, "batch rolled back; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(
                    1..10 * u64::from(tries),
                )))
                .await;
            }
            outcome => break outcome,
        }
    };
    match result {
        Ok((inserted, appended, posted, answered)) => {
            let started: u64 = starts.iter().map(|(runs, _, _)| runs.len() as u64).sum();
            let events: u64 = appends.iter().map(|(a, _)| a.events.len() as u64).sum();
            counts.commits.fetch_add(1, Ordering::Relaxed);
            counts.events.fetch_add(started + events, Ordering::Relaxed);
            counts.started.fetch_add(started, Ordering::Relaxed);
            counts.moved.fetch_add(appends.len() as u64, Ordering::Relaxed);
            for ((_, done), answers) in throttles.into_iter().zip(answered) {
                let _ = done.send(Ok(answers));
            }
            for (_, _, _, done) in releases {
                let _ = done.send(Ok(()));
            }
            for ((_, done), posted) in posts.into_iter().zip(posted) {
                let _ = done.send(Ok(posted));
            }
            for ((_, _, done), runs) in starts.into_iter().zip(inserted) {
                let _ = done.send(Ok(runs));
            }
            for ((_, done), outcome) in appends.into_iter().zip(appended) {
                let _ = done.send(outcome.map_err(AppendError::Refused));
            }
        }
        Err(error) => {
            // Start over on a fresh connection next time.
            *connection = None;
            let message = error.to_string();
            tracing::error!(%error, "batch not committed");
            for (_, _, done) in starts {
                let _ = done.send(Err(message.clone()));
            }
            for (_, done) in appends {
                let _ = done.send(Err(AppendError::Store(message.clone())));
            }
            for (_, done) in posts {
                let _ = done.send(Err(message.clone()));
            }
            for (_, done) in throttles {
                let _ = done.send(Err(message.clone()));
            }
            for (_, _, _, done) in releases {
                let _ = done.send(Err(message.clone()));
            }
        }
    }
}

type Starts = Vec<(Vec<NewRun>, bool, oneshot::Sender<Result<Vec<Inserted>, String>>)>;
type Appends = Vec<(Append, oneshot::Sender<Result<(), AppendError>>)>;
type Posts = Vec<(NewEvent, oneshot::Sender<Result<Posted, String>>)>;
type Throttles = Vec<(Vec<Ask>, oneshot::Sender<Result<Vec<Answer>, String>>)>;
type Releases = Vec<(
    Vec<String>,
    Vec<String>,
    Vec<Start>,
    oneshot::Sender<Result<(), String>>,
)>;
type Outcome = (
    Vec<Vec<Inserted>>,
    Vec<Result<(), AppendRefused>>,
    Vec<Posted>,
    Vec<Vec<Answer>>,
);

/// One try at a batch's transaction: every request's writes, or nothing.
#[allow(clippy::too_many_arguments)]
async fn transaction(
    db: &Db,
    connection: &mut Option<super::backend::Dedicated>,
    node: &str,
    starts: &Starts,
    appends: &Appends,
    posts: &Posts,
    throttles: &Throttles,
    releases: &Releases,
) -> Result<Outcome, StoreError> {
    if connection.is_none() {
        *connection = Some(db.dedicated().await?);
    }
    let dedicated = connection.as_mut().expect("connected above");
    // A batch of throttle asks and releases only skips the disk flush:
    // slots held by a process that died die with it (its runs ask
    // again when picked up), so only a power cut could forget a rate
    // window's last starts.
    let light = starts.is_empty() && appends.is_empty() && posts.is_empty();
    let kind = db.kind();
    if light && kind == Kind::Sqlite {
        super::backend::sync_to_disk(dedicated, kind, false).await?;
    }
    let mut tx = super::backend::begin(dedicated, kind).await?;
    if light && kind == Kind::Postgres {
        super::backend::sync_to_disk(&mut tx, kind, false).await?;
    }
    // What other nodes must hear of when this commits (PostgreSQL).
    let mut signals = Vec::new();
    let mut inserted = Vec::with_capacity(starts.len());
    for (runs, owned, _) in starts {
        let owner = owned.then_some(node);
        inserted.push(super::append::insert_runs(&mut tx, owner, runs).await?);
        if !owned {
            signals.push(Signal::Runs);
        }
    }
    let refs: Vec<&Append> = appends.iter().map(|(a, _)| a).collect();
    let appended = super::append::append(&mut tx, &refs, &mut signals).await?;
    if kind == Kind::Postgres {
        for (append, outcome) in refs.iter().zip(&appended) {
            if outcome.is_ok() && !append.events.is_empty() {
                signals.push(Signal::Events(append.run_id.clone()));
            }
        }
    }
    let mut posted = Vec::with_capacity(posts.len());
    for (event, _) in posts {
        let one = super::events::insert_event(&mut tx, event).await?;
        signals.extend(one.runs.iter().cloned().map(Signal::Inbox));
        posted.push(one);
    }
    if !releases.is_empty() {
        signals.push(Signal::Throttle);
    }
    // Slots given back first, so asks in the same batch can have them.
    for (holders, runs, starts, _) in releases {
        super::throttle::release(&mut tx, holders).await?;
        let runs: Vec<&str> = runs.iter().map(String::as_str).collect();
        super::throttle::release_runs(&mut tx, &runs).await?;
        super::throttle::record_starts(&mut tx, starts).await?;
    }
    let mut answered = Vec::with_capacity(throttles.len());
    for (asks, _) in throttles {
        let now = super::now_ms() as u64;
        answered.push(super::throttle::acquire(&mut tx, kind, asks, now).await?);
    }
    super::notify::send(&mut tx, kind, &signals).await?;
    tx.commit().await?;
    if light && kind == Kind::Sqlite {
        super::backend::sync_to_disk(dedicated, kind, true).await?;
    }
    Ok((inserted, appended, posted, answered))
}
