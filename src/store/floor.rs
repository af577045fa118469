//! The store's part of a benchmark floor (`sandstep bench server`): the
//! same rows a figure's runs wrote, committed bare (pre-encoded bodies, no
//! checks, no run logic) into a scratch database of the same schema and
//! settings, in as many group commits as the writer made.

use std::time::{Duration, Instant};

use super::backend;
use super::sql::Sql;
use super::{Db, Kind, StoreError};

/// What a writer committed: transactions, event rows, runs stored (new
/// rows) and runs moved (rows updated by an append).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub commits: u64,
    pub events: u64,
    pub started: u64,
    pub moved: u64,
}

impl Committed {
    /// What was committed between `before` and this.
    pub fn since(self, before: Committed) -> Committed {
        Committed {
            commits: self.commits.saturating_sub(before.commits),
            events: self.events.saturating_sub(before.events),
            started: self.started.saturating_sub(before.started),
            moved: self.moved.saturating_sub(before.moved),
        }
    }
}

/// A scratch database for bare commits.
pub struct Scratch {
    db: Db,
    connection: backend::Dedicated,
    /// Runs the bare commits move (their rows exist).
    runs: Vec<String>,
    /// The next event sequence number (unique across the scratch runs).
    seq: i64,
    /// Runs stored so far by [`Scratch::commit`].
    started: u64,
}

/// An event body of the size a trivial step's events have.
const BODY: &str = r#"{"seq":4,"run_id":"01a24e6f-2dc9-72a7-9c27-1faa81494daf","at_ms":1796612238799,"type":"step.succeeded","step":"s0","record":{"attempt":1,"duration_us":73,"instantiate_us":51,"fuel_consumed":1882,"peak_memory":1114112},"output":{"n":0}}"#;
/// A chain hash as every event and run row now stores one.
const HASH: &str = "5f2e1c9a0b7d4e3f8a6c2b1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";

/// Rows per multi-row statement, as the writer's.
const ROWS_PER_STATEMENT: usize = 500;

impl Scratch {
    /// Opens the scratch database `db` (fresh, migrated) with `runs` runs.
    pub async fn open(db: Db, runs: usize) -> Result<Scratch, StoreError> {
        let mut connection = db.dedicated().await?;
        let ids: Vec<String> = (0..runs).map(|i| format!("floor-{i:06}")).collect();
        for chunk in ids.chunks(ROWS_PER_STATEMENT / 9) {
            let mut query = Sql::new(
                db.kind(),
                "INSERT INTO runs (id, workflow, version, status, input, modules, created_ms, updated_ms, last_seq) ",
            );
            query.values(chunk, |row, id| {
                row.bind(id.as_str())
                    .bind("floor")
                    .bind(1_i64)
                    .bind("running")
                    .bind("{}")
                    .bind("{}")
                    .bind(0_i64)
                    .bind(0_i64)
                    .bind(0_i64);
            });
            query.build().execute(&mut *connection).await?;
        }
        Ok(Scratch {
            db,
            connection,
            runs: ids,
            seq: 0,
            started: 0,
        })
    }

    /// Commits `committed.events` event rows, stores `committed.started`
    /// new run rows and moves `committed.moved` existing ones, in
    /// `committed.commits` transactions, as evenly spread as the counts
    /// allow; how long it took.
    pub async fn commit(&mut self, committed: Committed) -> Result<Duration, StoreError> {
        let commits = committed.commits.max(1);
        let started = Instant::now();
        for n in 0..commits {
            let share = |total: u64| (total * (n + 1) / commits - total * n / commits) as usize;
            let (events, started) = (share(committed.events), share(committed.started));
            let runs = share(committed.moved).min(self.runs.len());
            let kind = self.db.kind();
            let mut tx = backend::begin(&mut self.connection, kind).await?;
            let ids: Vec<String> = (0..started as u64)
                .map(|i| format!("floor-new-{}", self.started + i))
                .collect();
            self.started += started as u64;
            for chunk in ids.chunks(ROWS_PER_STATEMENT / 15) {
                let mut query = Sql::new(
                    kind,
                    "INSERT INTO runs (id, workflow, version, status, idempotency_key, input, modules, created_ms, \
                     updated_ms, last_seq, owner, fence, parent_run_id, token, head) ",
                );
                query.values(chunk, |row, id| {
                    row.bind(id.as_str())
                        .bind("floor")
                        .bind(1_i64)
                        .bind("queued")
                        .bind(None::<&str>)
                        .bind(r#"{"i":1}"#)
                        .bind(r#"{"echo":"sha256:e199131ec47f03fdece744010dc2f5ae3940dcf776e9388cec460ef0c5ce84bf"}"#)
                        .bind(0_i64)
                        .bind(0_i64)
                        .bind(1_i64)
                        .bind("floor-node")
                        .bind(1_i64)
                        .bind(None::<&str>)
                        .bind(None::<&str>)
                        .bind(HASH);
                });
                query.build().execute(&mut *tx).await?;
            }
            let mut remaining = events;
            while remaining > 0 {
                let rows = remaining.min(ROWS_PER_STATEMENT * 2);
                remaining -= rows;
                let mut query = Sql::new(kind, "INSERT INTO events (run_id, seq, at_ms, type, body, hash) ");
                let seqs: Vec<i64> = (0..rows as i64).map(|i| self.seq + i).collect();
                self.seq += rows as i64;
                let run = &self.runs[n as usize % self.runs.len()];
                query.values(&seqs, |row, seq| {
                    row.bind(run.as_str())
                        .bind(*seq)
                        .bind(0_i64)
                        .bind("step.succeeded")
                        .bind(BODY)
                        .bind(HASH);
                });
                query.build().execute(&mut *tx).await?;
            }
            if runs > 0 {
                let first = (n as usize * runs) % self.runs.len();
                let moved = (0..runs).map(|i| self.runs[(first + i) % self.runs.len()].as_str());
                let mut query = Sql::new(kind, "UPDATE runs SET last_seq = last_seq + 1, head = ");
                query
                    .bind(HASH)
                    .push(", updated_ms = ")
                    .bind(n as i64)
                    .push(" WHERE id IN ")
                    .list(moved);
                query.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(started.elapsed())
    }

    /// The scratch database's kind.
    pub fn kind(&self) -> Kind {
        self.db.kind()
    }
}
