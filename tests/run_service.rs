//! The run service's seams: fenced appends, watchers that leave nothing
//! behind, stored rows that cannot be decoded, and batch starts.

use std::sync::Arc;

use futures_util::StreamExt;
use sandstep::run::{Event, EventKind, Journal, JournalError};
use sandstep::service::journal::{Outlets, RunJournal};
use sandstep::store::runs::{Lease, NewRun};
use sandstep::store::writer::Writer;
use sandstep::store::Db;
use serde_json::{json, Value};

use crate::support::server::*;
use crate::support::*;

fn now_ms() -> i64 {
    sandstep::run::event::now_ms() as i64
}

fn event(seq: u64, kind: EventKind) -> Event {
    Event {
        seq,
        run_id: "r1".into(),
        at_ms: now_ms() as u64,
        kind,
    }
}

fn outlets(db: &Db, node: &str) -> Arc<Outlets> {
    Arc::new(Outlets {
        writer: Writer::start(db.clone(), node),
        watchers: Default::default(),
        metrics: Default::default(),
        tracer: None,
    })
}

/// Two journals over one store: once another node claimed the run, the
/// first one's appends write nothing and fail with a conflict; so does an
/// append after a stale sequence number. The events are what the current
/// owner wrote, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_or_sequence_cannot_append() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::store::open(dir.path()).await;
    let (a, b) = (outlets(&db, "node-a"), outlets(&db, "node-b"));
    let queued = event(
        1,
        EventKind::RunQueued {
            workflow: "wf".into(),
            input: json!({}),
            origin: Default::default(),
        },
    );
    // node-a stores the run; node-a has no live lease (no nodes row).
    a.writer
        .start_runs(
            vec![NewRun {
                id: "r1".into(),
                workflow: "wf".into(),
                version: 1,
                idempotency_key: None,
                modules: Default::default(),
                queued,
            }],
            true,
        )
        .await
        .unwrap();
    let lease_a = Lease {
        node: "node-a".into(),
        fence: 1,
    };
    let journal_a = RunJournal::new(a.clone(), "r1".into(), lease_a, false, None);
    journal_a.append(&[event(2, EventKind::RunStarted)]).await.unwrap();

    // node-b takes the run over: the fence moves on.
    let (claimed, taken_over) = db.claim_free("node-b", 100).await.unwrap();
    assert_eq!(taken_over, 1, "taken from node-a's expired lease");
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].1,
        Lease {
            node: "node-b".into(),
            fence: 2
        }
    );
    let journal_b = RunJournal::new(
        b.clone(),
        "r1".into(),
        claimed[0].1.clone(),
        false,
        claimed[0].0.head.as_deref(),
    );

    let stale = journal_a
        .append(&[event(
            3,
            EventKind::RunFailed {
                error: "from the stale owner".into(),
            },
        )])
        .await
        .unwrap_err();
    assert_eq!(
        stale,
        JournalError::Conflict("the run is owned by node-b under fence 2, not by node-a under fence 1".into())
    );

    let skipped = EventKind::StepSkipped {
        step: "s".into(),
        reason: "test".into(),
    };
    journal_b.append(&[event(3, skipped.clone())]).await.unwrap();
    let behind = journal_b.append(&[event(3, skipped.clone())]).await.unwrap_err();
    assert_eq!(
        behind,
        JournalError::Conflict("expected last seq 2, the run is at 3".into())
    );
    journal_b
        .append(&[event(4, EventKind::RunCompleted { output: json!(1) })])
        .await
        .unwrap();

    let events = db.events("r1", 0).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["run.queued", "run.started", "step.skipped", "run.completed"]);
    let row = db.run("r1").await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.error), ("completed", None));
    // An ended run has no owner: nobody appends to it any more.
    let after = journal_b.append(&[event(5, skipped)]).await.unwrap_err();
    assert!(matches!(after, JournalError::Conflict(_)), "{after:?}");
}

const QUICK: &str = "name: quick\nsteps:\n  - { id: a, module: echo, input: { x: 1 } }\n";
const SLOW: &str = "name: slow\nsteps:\n  - { id: nap, module: hostile, input: { mode: sleep, ms: 20000 } }\n";

pub async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// 10,000 event streams, waits and cancels on unknown and ended runs leave
/// no watcher behind; a live stream counts while it is open and is gone
/// when its run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_unknown_and_ended_runs_leaves_nothing_behind() {
    let server = TestServer::with_workflow("quick", QUICK).await;
    assert_eq!(server.apply("slow", SLOW).await.0, 201);
    let (status, done) = server
        .post_json(
            "/v1/workflows/quick/runs?wait=10s",
            json!({ "idempotency_key": "done" }),
        )
        .await;
    assert_eq!((status, done["status"].as_str()), (201, Some("completed")));
    let done = done["id"].as_str().unwrap().to_string();

    let slow = server.start_run("slow").await;
    let mut live = server
        .request(reqwest::Method::GET, &format!("/v1/runs/{slow}/events"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    live.next()
        .await
        .expect("the live stream sends the stored events")
        .unwrap();
    assert_eq!(metric(&server, "sandstep_watched_runs").await, 1.0);

    futures_util::stream::iter(0..10_000)
        .for_each_concurrent(32, |i| {
            let (server, done) = (&server, &done);
            async move {
                let (status, body) = match i % 5 {
                    0 => server.get(&format!("/v1/runs/unknown-{i}/events")).await,
                    1 => server.get(&format!("/v1/runs/{done}/events")).await,
                    2 => {
                        server
                            .post_json("/v1/workflows/quick/runs?wait=5s", json!({ "idempotency_key": "done" }))
                            .await
                    }
                    3 => {
                        server
                            .post_json(&format!("/v1/runs/unknown-{i}/cancel"), json!({}))
                            .await
                    }
                    _ => server.post_json(&format!("/v1/runs/{done}/cancel"), json!({})).await,
                };
                let expected = [404, 200, 200, 404, 409][i % 5];
                assert_eq!(status, expected, "request {i}: {body}");
                if i % 5 == 1 {
                    assert!(body.as_str().unwrap().contains("event: run.completed"), "{body}");
                }
            }
        })
        .await;
    assert_eq!(
        metric(&server, "sandstep_watched_runs").await,
        1.0,
        "only the live stream's run is watched"
    );

    let (status, _) = server.post_json(&format!("/v1/runs/{slow}/cancel"), json!({})).await;
    assert_eq!(status, 202);
    while live.next().await.is_some() {}
    drop(live);
    assert_eq!(metric(&server, "sandstep_watched_runs").await, 0.0);
    server.stop().await;
}

/// A stored event that cannot be decoded is not skipped: reading the run
/// answers a 500 problem without internals, logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_is_a_500_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("quick", QUICK).await.0, 201);
    let (_, run) = server.post_json("/v1/workflows/quick/runs?wait=10s", json!({})).await;
    assert_eq!(run["status"], "completed");
    let id = run["id"].as_str().unwrap().to_string();
    server.stop().await;

    sql(
        dir.path(),
        &["UPDATE events SET body = '{\"seq\": 2, trunc' WHERE seq = 2"],
    )
    .await;
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    assert_eq!(metric(&server, "sandstep_store_errors_total").await, 0.0);
    for path in [format!("/v1/runs/{id}"), format!("/v1/runs/{id}/events")] {
        let (status, body) = server.get(&path).await;
        assert_eq!((status, problem(&body)), (500, "internal"), "{path}: {body}");
        assert_eq!(body["detail"], "an internal error occurred");
    }
    assert_eq!(metric(&server, "sandstep_store_errors_total").await, 2.0);
    server.stop().await;
}

const GREET: &str = r#"
name: greet
inputs:
  who: { type: string, required: true }
steps:
  - { id: hi, module: hello, input: { name: "{{ inputs.who }}" } }
output: "{{ steps.hi.output.greeting }}"
"#;

/// A batch is checked whole before anything is stored; a valid one stores
/// every run, answering existing runs for used idempotency keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_start_is_all_or_nothing() {
    let server = TestServer::start_with(|c| c.max_batch = 4).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("greet", GREET).await.0, 201);
    let batch = |runs: Value| server.post_json("/v1/workflows/greet/runs/batch", json!({ "runs": runs }));

    let (status, body) = batch(json!([
        { "input": { "who": "a" } },
        { "input": { "who": 1 } },
        { "input": { "who": "c" }, "idempotency_key": "" },
    ]))
    .await;
    assert_eq!(
        (status, problem(&body), &body["field"]),
        (422, "invalid-input", &json!("runs"))
    );
    assert_eq!(
        body["errors"],
        json!([
            { "location": "runs[1].input.who", "message": "input who must be a string, got a number" },
            { "location": "runs[2].idempotency_key", "message": "idempotency_key must be 1 to 200 characters" },
        ])
    );
    let (_, listed) = server.get("/v1/runs").await;
    assert_eq!(listed["runs"], json!([]), "a refused batch stores nothing");

    let (status, first) = server
        .post_json(
            "/v1/workflows/greet/runs",
            json!({ "input": { "who": "z" }, "idempotency_key": "k0" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = batch(json!([
        { "input": { "who": "a" }, "idempotency_key": "k0" },
        { "input": { "who": "b" }, "idempotency_key": "k1" },
        { "input": { "who": "c" } },
        { "input": { "who": "d" }, "idempotency_key": "k1" },
    ]))
    .await;
    assert_eq!(status, 201, "{body}");
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs[0], json!({ "id": first["id"], "created": false }));
    assert_eq!(
        (runs[1]["created"].clone(), runs[2]["created"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(
        runs[3],
        json!({ "id": runs[1]["id"], "created": false }),
        "one key, one run"
    );
    for (run, who) in [(&runs[1], "b"), (&runs[2], "c")] {
        let ended = server.wait_run(run["id"].as_str().unwrap()).await;
        assert_eq!(
            (ended["status"].clone(), ended["output"].clone()),
            (json!("completed"), json!(format!("Hello, {who}!")))
        );
    }

    let five: Vec<Value> = (0..5).map(|i| json!({ "input": { "who": i.to_string() } })).collect();
    let (status, body) = batch(json!(five)).await;
    assert_eq!(
        (status, problem(&body), &body["field"]),
        (422, "invalid-input", &json!("runs"))
    );
    assert_eq!(body["detail"], "a batch holds at most 4 runs (this one has 5)");
    let (status, body) = batch(json!([])).await;
    assert_eq!((status, problem(&body)), (422, "invalid-input"));
    let (status, body) = server
        .post_json("/v1/workflows/nope/runs/batch", json!({ "runs": [{ "input": {} }] }))
        .await;
    assert_eq!((status, problem(&body)), (404, "not-found"));
    let (_, listed) = server.get("/v1/runs").await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 3);
    server.stop().await;
}

/// `?wait` answers with the run resource built from the events it watched;
/// it is exactly what reading the run back answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_start_answers_what_the_store_holds() {
    let server = TestServer::with_workflow("greet", GREET).await;
    for who in ["a", "b", "c"] {
        let (status, answered) = server
            .post_json("/v1/workflows/greet/runs?wait=10s", json!({ "input": { "who": who } }))
            .await;
        assert_eq!(
            (status, answered["status"].as_str()),
            (201, Some("completed")),
            "{answered}"
        );
        let (_, stored) = server
            .get(&format!("/v1/runs/{}", answered["id"].as_str().unwrap()))
            .await;
        assert_eq!(answered, stored);
    }
    server.stop().await;
}

/// The node's heartbeat keeps extending its lease, which holds the run it
/// drives; a run that ended has no owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_renews_leases_until_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.lease = std::time::Duration::from_millis(300)).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("slow", SLOW).await.0, 201);
    let id = server.start_run("slow").await;
    let lease = |id: String| {
        let dir = dir.path().to_path_buf();
        async move {
            let rows = query(
                &dir,
                &format!(
                    "SELECT r.owner, n.lease_until_ms FROM runs r LEFT JOIN nodes n ON n.id = r.owner \
                     WHERE r.id = '{id}'"
                ),
            )
            .await;
            (rows[0][0].clone(), rows[0][1].as_i64())
        }
    };
    let (owner, first) = lease(id.clone()).await;
    assert!(owner.as_str().is_some_and(|o| o.starts_with("node-")), "{owner}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, later) = lease(id.clone()).await;
    assert!(later > first, "the lease moved on: {first:?} -> {later:?}");
    let (status, _) = server.post_json(&format!("/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(lease(id.clone()).await, (Value::Null, None));
    server.stop().await;
}
