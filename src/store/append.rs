//! The writes of the group-commit writer: new runs and conditional
//! appends, each a few multi-row statements however many runs a batch
//! holds.

use std::collections::{HashMap, HashSet};

use sqlx::Row as _;

use super::backend::Connection;
use super::notify::Signal;
use super::runs::{run_row, status_change, Append, AppendRefused, Inserted, NewRun, RunRow, COLUMNS};
use super::sql::Sql;
use super::Kind;
use super::{now_ms, StoreError};
use crate::run::{Event, EventKind};

/// Rows per multi-row statement: SQLite allows 32,766 bound values.
const ROWS_PER_STATEMENT: usize = 500;

/// Stores runs with their `run.queued` events, owned by `node` (or by
/// nobody: any node may claim them). A run whose
/// workflow and idempotency key exist already (stored before, earlier in
/// this transaction, earlier in `runs`, or by another node committing at
/// the same moment) is answered, not stored. A few statements per call,
/// however many runs.
pub(crate) async fn insert_runs(
    tx: &mut Connection,
    node: Option<&str>,
    runs: &[NewRun],
) -> Result<Vec<Inserted>, StoreError> {
    let mut existing = existing_runs(tx, runs).await?;
    let mut out: Vec<Inserted> = Vec::with_capacity(runs.len());
    let mut fresh: Vec<Fresh<'_>> = Vec::with_capacity(runs.len());
    for run in runs {
        let key = run.idempotency_key.as_ref().map(|k| (run.workflow.clone(), k.clone()));
        if let Some(found) = key.as_ref().and_then(|k| existing.get(k)) {
            out.push(Inserted::Existing(found.clone()));
            continue;
        }
        let input = match &run.queued.kind {
            EventKind::RunQueued { input, .. } => input.clone(),
            _ => serde_json::Value::Null,
        };
        let body = encode(&run.queued);
        let hash = crate::run::chain::hex(&crate::run::chain::link(&run.id, None, &body));
        let row = RunRow {
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            version: run.version,
            status: "queued".into(),
            idempotency_key: run.idempotency_key.clone(),
            output: None,
            error: None,
            created_ms: run.queued.at_ms as i64,
            updated_ms: run.queued.at_ms as i64,
            modules: run.modules.clone(),
            input,
            wake_ms: None,
            head: Some(hash.clone()),
        };
        if let Some(key) = key {
            existing.insert(key, row.clone());
        }
        fresh.push((run, row.input.to_string(), body, hash));
        out.push(Inserted::New(row));
    }
    let stored = store_rows(tx, node, &fresh).await?;
    if stored.len() < fresh.len() {
        // Another node stored the same key since the look-up.
        answer_conflicts(tx, &fresh, &stored, &mut out).await?;
    }
    let queued: Vec<Row<'_>> = fresh
        .iter()
        .filter(|(run, ..)| stored.contains(&run.id))
        .map(|(run, _, body, hash)| (&run.queued, body.as_str(), Some(hash.as_str())))
        .collect();
    insert_events(tx, &queued).await?;
    Ok(out)
}

/// Runs already stored under the idempotency keys asked for, by
/// (workflow, key).
async fn existing_runs(tx: &mut Connection, runs: &[NewRun]) -> Result<HashMap<(String, String), RunRow>, StoreError> {
    let mut existing: HashMap<(String, String), RunRow> = HashMap::new();
    let keyed: Vec<&NewRun> = runs.iter().filter(|r| r.idempotency_key.is_some()).collect();
    for chunk in keyed.chunks(ROWS_PER_STATEMENT) {
        let mut query = Sql::new(Kind::of(tx), format!("SELECT {COLUMNS} FROM runs WHERE "));
        for (i, run) in chunk.iter().enumerate() {
            query
                .push(if i == 0 { "(workflow = " } else { " OR (workflow = " })
                .bind(&run.workflow)
                .push(" AND idempotency_key = ")
                .bind(run.idempotency_key.as_deref())
                .push(")");
        }
        for row in query.build().fetch_all(&mut *tx).await? {
            let row = run_row(&row)?;
            let key = row.idempotency_key.clone().unwrap_or_default();
            existing.insert((row.workflow.clone(), key), row);
        }
    }
    Ok(existing)
}

/// Inserts the new runs' rows, a few per statement; answers those stored
/// (a key another node stored meanwhile is skipped).
async fn store_rows(
    tx: &mut Connection,
    node: Option<&str>,
    fresh: &[Fresh<'_>],
) -> Result<HashSet<String>, StoreError> {
    let mut stored: HashSet<String> = HashSet::with_capacity(fresh.len());
    for chunk in fresh.chunks(ROWS_PER_STATEMENT / 15) {
        let mut query = Sql::new(
            Kind::of(tx),
            "INSERT INTO runs (id, workflow, version, status, idempotency_key, input, modules, created_ms, updated_ms, \
             last_seq, owner, fence, parent_run_id, token, head) ",
        );
        query.values(chunk, |row, (run, input, _, head)| {
            let (parent, token) = match &run.queued.kind {
                EventKind::RunQueued { origin, .. } => (origin.parent_run_id.as_deref(), origin.token.as_deref()),
                _ => (None, None),
            };
            row.bind(&run.id)
                .bind(&run.workflow)
                .bind(run.version)
                .bind("queued")
                .bind(run.idempotency_key.as_deref())
                .bind(input.as_str())
                .bind(serde_json::to_string(&run.modules).expect("a map of strings serializes"))
                .bind(run.queued.at_ms as i64)
                .bind(run.queued.at_ms as i64)
                .bind(run.queued.seq as i64)
                .bind(node)
                .bind(i64::from(node.is_some()))
                .bind(parent)
                .bind(token)
                .bind(head.as_str());
        });
        // Another node may have stored the same key since the look-up.
        query.push(" ON CONFLICT (workflow, idempotency_key) DO NOTHING RETURNING id");
        for row in query.build().fetch_all(&mut *tx).await? {
            stored.insert(row.try_get("id")?);
        }
    }
    Ok(stored)
}

/// Answers a run whose key another node stored meanwhile with that run.
async fn answer_conflicts(
    tx: &mut Connection,
    fresh: &[Fresh<'_>],
    stored: &HashSet<String>,
    out: &mut [Inserted],
) -> Result<(), StoreError> {
    for (run, ..) in fresh {
        if stored.contains(&run.id) {
            continue;
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs WHERE workflow = $1 AND idempotency_key = $2"
        ))
        .bind(&run.workflow)
        .bind(run.idempotency_key.as_deref())
        .fetch_one(&mut *tx)
        .await?;
        let existing = run_row(&row)?;
        for answer in out.iter_mut() {
            if matches!(answer, Inserted::New(new) if new.id == run.id) {
                *answer = Inserted::Existing(existing.clone());
            }
        }
    }
    Ok(())
}

/// Applies conditional appends; each is refused (writing nothing) unless
/// its lease holder still owns the run under the same fence and its
/// `expected_seq` is the run's last. Accepted appends move the run's row to
/// its latest status and consume their inbox messages; an ended child run
/// adds a message to its parent's inbox (and a [`Signal`] for it to
/// `signals`). One `UPDATE ... FROM (VALUES ...)` checks and moves every
/// run of the batch at once.
pub(crate) async fn append(
    tx: &mut Connection,
    appends: &[&Append],
    signals: &mut Vec<Signal>,
) -> Result<Vec<Result<(), AppendRefused>>, StoreError> {
    let now = now_ms();
    let moved = move_runs(tx, appends).await?;
    let mut results = Vec::with_capacity(appends.len());
    let mut accepted: Vec<Row<'_>> = Vec::new();
    let mut ended: Vec<&str> = Vec::new();
    let mut throttled_ended: Vec<&str> = Vec::new();
    let mut consumed: Vec<(i64, &str)> = Vec::new();
    for append in appends {
        if append.events.is_empty() {
            // Only requests answered by no event (an event no wait took).
            results.push(consume_only(tx, append, now).await?);
            continue;
        }
        if !moved.contains(append.run_id.as_str()) {
            results.push(Err(refusal(tx, append).await?));
            continue;
        }
        if append.events.iter().any(|e| e.kind.is_final()) {
            ended.push(&append.run_id);
            if append.throttled {
                throttled_ended.push(&append.run_id);
            }
        } else {
            consumed.extend(append.consumed.iter().map(|id| (*id, append.run_id.as_str())));
        }
        upgrade_run(tx, append).await?;
        for (i, (event, body)) in append.events.iter().zip(&append.bodies).enumerate() {
            accepted.push((event, body.as_str(), append.hashes.get(i).map(String::as_str)));
        }
        results.push(Ok(()));
    }
    tell_parents(tx, &ended, now, signals).await?;
    // An ended run's throttle slots are given back with its end.
    super::throttle::release_runs(tx, &throttled_ended).await?;
    answer_requests(tx, &ended, &consumed, now).await?;
    insert_events(tx, &accepted).await?;
    let accepted: Vec<&Event> = accepted.into_iter().map(|(event, ..)| event).collect();
    super::events::follow_waits(tx, &accepted, now).await?;
    Ok(results)
}

/// A run moved to another version of its workflow (`run.upgraded`) is
/// loaded from there on at that version, with the modules it pins.
async fn upgrade_run(tx: &mut Connection, append: &Append) -> Result<(), StoreError> {
    for event in &append.events {
        if let EventKind::RunUpgraded { to, modules, .. } = &event.kind {
            sqlx::query("UPDATE runs SET version = $1, modules = $2 WHERE id = $3")
                .bind(to)
                .bind(serde_json::to_string(modules).expect("digests serialize"))
                .bind(&append.run_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// Moves every run whose owner, fence and last seq are still the ones its
/// append expects, a few rows per statement; answers the runs moved. An
/// append that changes the run's status also sets its status, output or
/// error, update time, owner and wake time; most appends (a step's events)
/// set only the last seq and the fuel used, and so rewrite no index of
/// `runs`.
async fn move_runs(tx: &mut Connection, appends: &[&Append]) -> Result<HashSet<String>, StoreError> {
    let mut moved: HashSet<String> = HashSet::with_capacity(appends.len());
    let mut steps = Vec::with_capacity(appends.len());
    let mut changes = Vec::new();
    for append in appends {
        let Some(last) = append.events.last() else { continue };
        let fuel: i64 = append.events.iter().map(|e| e.kind.fuel_consumed() as i64).sum();
        match status_change(&append.events) {
            Some(change) => changes.push((*append, last.seq as i64, change, fuel)),
            None => steps.push((*append, last.seq as i64, fuel)),
        }
    }
    for chunk in steps.chunks(ROWS_PER_STATEMENT / 7) {
        let mut query = Sql::new(
            Kind::of(tx),
            "UPDATE runs SET last_seq = v.column2, fuel = runs.fuel + v.column3, head = v.column7 FROM (",
        );
        query.values(chunk, |row, (append, last_seq, fuel)| {
            row.bind(&append.run_id)
                .bind(*last_seq)
                .bind(*fuel)
                .bind(append.expected_seq as i64)
                .bind(&append.lease.node)
                .bind(append.lease.fence)
                .bind(append.head());
        });
        query.push(
            ") AS v WHERE runs.id = v.column1 AND runs.last_seq = v.column4 \
             AND runs.owner = v.column5 AND runs.fence = v.column6 RETURNING id",
        );
        for row in query.build().fetch_all(&mut *tx).await? {
            moved.insert(row.try_get("id")?);
        }
    }
    for chunk in changes.chunks(ROWS_PER_STATEMENT / 13) {
        let mut query = Sql::new(
            Kind::of(tx),
            "UPDATE runs SET last_seq = v.column2, status = v.column3, \
             output = COALESCE(v.column4, runs.output), error = COALESCE(v.column5, runs.error), \
             updated_ms = v.column6, owner = CASE WHEN v.column7 = 1 THEN NULL ELSE runs.owner END, \
             wake_ms = v.column11, fuel = runs.fuel + v.column12, head = v.column13 FROM (",
        );
        query.values(chunk, |row, (append, last_seq, change, fuel)| {
            row.bind(&append.run_id)
                .bind(*last_seq)
                .bind(change.status)
                .bind(change.output.map(|o| o.to_string()))
                .bind(change.error)
                .bind(change.at_ms)
                .bind(i64::from(change.ended))
                .bind(append.expected_seq as i64)
                .bind(&append.lease.node)
                .bind(append.lease.fence)
                .bind(change.wake_ms)
                .bind(*fuel)
                .bind(append.head());
        });
        query.push(
            ") AS v WHERE runs.id = v.column1 AND runs.last_seq = v.column8 \
             AND runs.owner = v.column9 AND runs.fence = v.column10 RETURNING id",
        );
        for row in query.build().fetch_all(&mut *tx).await? {
            moved.insert(row.try_get("id")?);
        }
    }
    Ok(moved)
}

/// The start of the insert that tells parents their children ended.
const TELL_PARENTS: &str = "INSERT INTO inbox (run_id, kind, body, created_ms, child_id) \
     SELECT parent_run_id, 'child_ended', '{\"kind\":\"child_ended\"}', ";

/// An ended child run tells its parent, through the parent's inbox.
async fn tell_parents(
    tx: &mut Connection,
    ended: &[&str],
    now: i64,
    signals: &mut Vec<Signal>,
) -> Result<(), StoreError> {
    for chunk in ended.chunks(ROWS_PER_STATEMENT) {
        let mut query = Sql::new(Kind::of(tx), TELL_PARENTS);
        query
            .bind(now)
            .push(", id FROM runs WHERE parent_run_id IS NOT NULL AND id IN ")
            .list(chunk.iter().copied())
            .push(" RETURNING run_id");
        for row in query.build().fetch_all(&mut *tx).await? {
            signals.push(Signal::Inbox(row.try_get("run_id")?));
        }
    }
    Ok(())
}

/// Marks requests answered: every open one of an ended run (its end
/// answers them), and those a run's events consumed.
async fn answer_requests(
    tx: &mut Connection,
    ended: &[&str],
    consumed: &[(i64, &str)],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in ended.chunks(ROWS_PER_STATEMENT) {
        let mut query = Sql::new(Kind::of(tx), "UPDATE inbox SET consumed_ms = ");
        query
            .bind(now)
            .push(" WHERE consumed_ms IS NULL AND run_id IN ")
            .list(chunk.iter().copied());
        query.build().execute(&mut *tx).await?;
    }
    for (id, run_id) in consumed {
        sqlx::query("UPDATE inbox SET consumed_ms = $1 WHERE id = $2 AND run_id = $3")
            .bind(now)
            .bind(id)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Marks an append's inbox messages consumed when its writer still owns
/// the run; refused otherwise, like an append of events.
async fn consume_only(tx: &mut Connection, append: &Append, now: i64) -> Result<Result<(), AppendRefused>, StoreError> {
    if append.consumed.is_empty() {
        return Ok(Ok(()));
    }
    let owned = sqlx::query("SELECT 1 FROM runs WHERE id = $1 AND owner = $2 AND fence = $3")
        .bind(&append.run_id)
        .bind(&append.lease.node)
        .bind(append.lease.fence)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !owned {
        return Ok(Err(refusal(tx, append).await?));
    }
    for id in &append.consumed {
        sqlx::query("UPDATE inbox SET consumed_ms = $1 WHERE id = $2 AND run_id = $3")
            .bind(now)
            .bind(id)
            .bind(&append.run_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(Ok(()))
}

/// Why an append matched no row, for the error.
async fn refusal(tx: &mut Connection, append: &Append) -> Result<AppendRefused, StoreError> {
    let row = sqlx::query("SELECT last_seq, owner, fence FROM runs WHERE id = $1")
        .bind(&append.run_id)
        .fetch_optional(&mut *tx)
        .await?;
    let reason = match row {
        None => "no such run".to_string(),
        Some(row) => {
            let seq: i64 = row.try_get("last_seq")?;
            let owner: Option<String> = row.try_get("owner")?;
            let fence: i64 = row.try_get("fence")?;
            if owner.as_deref() != Some(append.lease.node.as_str()) || fence != append.lease.fence {
                format!(
                    "the run is owned by {} under fence {fence}, not by {} under fence {}",
                    owner.as_deref().unwrap_or("nobody"),
                    append.lease.node,
                    append.lease.fence
                )
            } else {
                format!("expected last seq {}, the run is at {seq}", append.expected_seq)
            }
        }
    };
    Ok(AppendRefused {
        run_id: append.run_id.clone(),
        reason,
    })
}

/// A new run as it is stored: its input, its `run.queued` event's body
/// and that event's hash.
type Fresh<'a> = (&'a NewRun, String, String, String);

/// An event row: the event, its stored body, its chain hash (if any).
type Row<'a> = (&'a Event, &'a str, Option<&'a str>);

/// Inserts events with their stored bodies and hashes (the caller checked
/// they may be written).
async fn insert_events(tx: &mut Connection, events: &[Row<'_>]) -> Result<(), StoreError> {
    for chunk in events.chunks(ROWS_PER_STATEMENT * 2) {
        let mut query = Sql::new(
            Kind::of(tx),
            "INSERT INTO events (run_id, seq, at_ms, type, body, hash) ",
        );
        query.values(chunk, |row, (event, body, hash)| {
            row.bind(&event.run_id)
                .bind(event.seq as i64)
                .bind(event.at_ms as i64)
                .bind(event.kind.name())
                .bind(*body)
                .bind(*hash);
        });
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// An event as its row stores it (JSON).
pub(crate) fn encode(event: &Event) -> String {
    serde_json::to_string(event).expect("an event serializes")
}
