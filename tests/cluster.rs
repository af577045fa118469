//! Three `sandstep serve` processes on one PostgreSQL database: runs
//! spread over the nodes, one node killed with SIGKILL mid-run and another
//! paused with SIGSTOP past its lease, and every run still completes
//! exactly once. Runs only when the tests run on PostgreSQL
//! (`SANDSTEP_TEST_POSTGRES`, as `scripts/test.sh` sets for its second pass).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row as _;

use crate::crash_recovery::{call, push_hostile_and_apply};
use crate::support::process::{command, Served};
use crate::support::store;

const RUNS: usize = 300;
const LEASE_MS: u64 = 2000;

const WORK: &str = r#"
name: work
steps:
  - { id: a, module: hostile, input: { mode: sleep, ms: 700 } }
  - { id: b, module: hostile, input: { mode: sleep, ms: 700, after: "{{ steps.a.output.slept_ms }}" } }
  - { id: c, module: hostile, input: { mode: context, n: "{{ inputs.n }}", after: "{{ steps.b.output.slept_ms }}" } }
output: { n: "{{ inputs.n }}", attempt: "{{ steps.c.output.attempt }}" }
"#;

fn node(data_dir: &std::path::Path, database: &str) -> Served {
    let lease = format!("{}ms", LEASE_MS);
    Served::spawn(
        command()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--max-runs",
                "120",
                "--lease",
                &lease,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("SANDSTEP_DATABASE_URL", database),
    )
}

/// `count` nodes on one fresh database, or `None` when the tests do not
/// run on PostgreSQL.
struct Cluster {
    nodes: Vec<Served>,
    /// Each node's id, in order.
    ids: Vec<String>,
    shared: tempfile::TempDir,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start(count: usize) -> Option<Cluster> {
        if store::postgres().is_none() {
            eprintln!("skipped: the cluster tests run on PostgreSQL (SANDSTEP_TEST_POSTGRES)");
            return None;
        }
        let shared = tempfile::tempdir().unwrap();
        let database = store::database_url(shared.path()).unwrap();
        let dirs: Vec<_> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes = dirs.iter().map(|d| node(d.path(), &database)).collect();
        let ids = dirs
            .iter()
            .map(|d| {
                std::fs::read_to_string(d.path().join("node-id"))
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect();
        Some(Cluster {
            nodes,
            ids,
            shared,
            _dirs: dirs,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_complete_every_run_once_through_sigkill_and_sigstop() {
    let Some(Cluster {
        mut nodes, ids, shared, ..
    }) = Cluster::start(3)
    else {
        return;
    };
    push_hostile_and_apply(&nodes[0].url, &[("work", WORK.into())]).await;

    // 300 runs started through the three nodes in turn.
    let mut runs: Vec<String> = Vec::with_capacity(RUNS);
    for chunk in (0..RUNS).collect::<Vec<_>>().chunks(30) {
        let starts = chunk.iter().map(|&n| {
            let url = nodes[n % 3].url.clone();
            async move {
                let body = json!({ "input": { "n": n }, "idempotency_key": format!("k{n}") });
                call(&url, reqwest::Method::POST, "/v1/workflows/work/runs", Some(body)).await
            }
        });
        for (status, run) in futures_util::future::join_all(starts).await {
            assert_eq!(status, 201, "{run}");
            runs.push(run["id"].as_str().unwrap().to_string());
        }
    }
    let pool = store::pool(shared.path()).await;
    let owned = |node: String| {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT id FROM runs WHERE owner = $1 AND status NOT IN ('completed', 'failed', 'canceled')")
                .bind(node)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("id"))
                .collect::<HashSet<String>>()
        }
    };
    // Mid-run: every node executes some; then node 0 dies and node 1 stalls.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (lost, stalled) = (owned(ids[0].clone()).await, owned(ids[1].clone()).await);
    assert!(!lost.is_empty() && !stalled.is_empty(), "work spread over the nodes");
    let killed_ms = now_ms();
    nodes[0].kill();
    nodes[1].signal("STOP");
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 1500)).await;
    nodes[1].signal("CONT");

    // Every run ends, asked through the node that stalled.
    let url = nodes[1].url.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status NOT IN ('completed', 'failed', 'canceled')")
                .fetch_one(&pool)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} runs never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut takeovers = Vec::new();
    let mut nodes_used = HashSet::new();
    for (n, id) in runs.iter().enumerate() {
        let (status, run) = call(&url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
        assert_eq!((status, run["status"].as_str()), (200, Some("completed")), "{run}");
        assert_eq!(run["output"]["n"], n, "{run}");
        let events: Vec<Value> = sqlx::query("SELECT body FROM events WHERE run_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(r.get::<&str, _>("body")).unwrap())
            .collect();
        let completed = events.iter().filter(|e| e["type"] == "run.completed").count();
        assert_eq!(completed, 1, "run {id} completed once");
        // No step whose success was recorded started again.
        let mut succeeded = HashSet::new();
        for event in &events {
            let step = event["step"].as_str().unwrap_or_default();
            match event["type"].as_str().unwrap() {
                "step.succeeded" => assert!(succeeded.insert(step.to_string()), "{id}: {step} succeeded twice"),
                "step.started" => assert!(!succeeded.contains(step), "{id}: {step} ran again after it succeeded"),
                _ => {}
            }
        }
        // No two attempts of the run on different nodes overlap in time,
        // and an attempt run again keeps its idempotency key.
        let mut spans = Vec::new();
        for step in run["steps"].as_array().unwrap() {
            let attempts = step["attempts"].as_array().unwrap();
            for attempt in attempts {
                assert_eq!(attempt["idempotency_key"], attempts[0]["idempotency_key"], "{run}");
                let node = attempt["node"].as_str().unwrap().to_string();
                nodes_used.insert(node.clone());
                if let (Some(start), Some(end)) = (attempt["started_ms"].as_u64(), attempt["ended_ms"].as_u64()) {
                    spans.push((node, start, end));
                }
            }
        }
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                assert!(a.0 == b.0 || a.2 <= b.1 || b.2 <= a.1, "{id}: {a:?} and {b:?} overlap");
            }
        }
        if lost.contains(id) {
            let first_elsewhere = events
                .iter()
                .filter(|e| e["type"] == "step.started" && e["node"] != ids[0].as_str())
                .filter_map(|e| e["at_ms"].as_u64())
                .find(|at| *at >= killed_ms);
            takeovers.push(first_elsewhere.expect("a lost run went on elsewhere") - killed_ms);
        }
    }
    assert_eq!(nodes_used.len(), 3, "every node ran attempts: {nodes_used:?}");
    takeovers.sort();
    let median = takeovers[takeovers.len() / 2];
    eprintln!(
        "takeover after SIGKILL (lease {LEASE_MS} ms, {} runs lost): first {} ms, median {median} ms, last {} ms",
        takeovers.len(),
        takeovers[0],
        takeovers[takeovers.len() - 1]
    );
    assert!(
        takeovers[0] <= LEASE_MS + 2000,
        "the first lost run went on {} ms after the kill",
        takeovers[0]
    );
    nodes[1].signal("TERM");
    let _ = nodes[1].child.wait();
    nodes[2].signal("TERM");
    let _ = nodes[2].child.wait();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const TICK: &str = r#"
name: tick
triggers:
  - schedule: "* * * * * *"
steps:
  - { id: s, module: hostile, input: { mode: context } }
"#;

const ON_ORDER: &str = r#"
name: on-order
triggers:
  - on_event: order
    input: { n: "{{ event.data.n }}" }
steps:
  - { id: s, module: hostile, input: { mode: context, n: "{{ inputs.n }}" } }
output: "{{ inputs.n }}"
"#;

const SLOW: &str = r#"
name: slow
steps:
  - { id: a, module: hostile, input: { mode: sleep, ms: 1500 } }
  - { id: b, module: hostile, input: { mode: sleep, ms: 300, after: "{{ steps.a.output.slept_ms }}" } }
"#;

/// Two nodes: each schedule tick and each posted event starts one run
/// across both; a node stopped with SIGTERM hands its runs to the other
/// within a second of stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn triggers_fire_once_across_nodes_and_sigterm_hands_runs_over() {
    let Some(Cluster {
        mut nodes, ids, shared, ..
    }) = Cluster::start(2)
    else {
        return;
    };
    let workflows = [
        ("tick", TICK.into()),
        ("on-order", ON_ORDER.into()),
        ("slow", SLOW.into()),
    ];
    push_hostile_and_apply(&nodes[0].url, &workflows).await;
    let pool = store::pool(shared.path()).await;

    // Events posted through both nodes: one run each.
    for n in 0..20 {
        let body = json!({ "topic": "order", "data": { "n": n } });
        let (status, event) = call(&nodes[n % 2].url, reqwest::Method::POST, "/v1/events", Some(body)).await;
        assert_eq!(status, 202, "{event}");
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (_, events) = call(
        &nodes[1].url,
        reqwest::Method::GET,
        "/v1/events?topic=order&limit=100",
        None,
    )
    .await;
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 20);
    for event in &events {
        assert_eq!(event["started"].as_array().map(Vec::len), Some(1), "{event}");
    }
    let outputs: Vec<String> = sqlx::query("SELECT output FROM runs WHERE workflow = 'on-order' ORDER BY output")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.get::<Option<String>, _>("output"))
        .collect();
    let mut expected: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(outputs, expected, "every event's run completed once");
    // Both nodes tick every second; each tick starts one run.
    let ticks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE workflow = 'tick'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs() as i64 + 2;
    assert!((2..=seconds).contains(&ticks), "{ticks} tick runs in about {seconds} s");

    // SIGTERM while the first node's runs are inside a 1.5 s step.
    let mut slow = Vec::new();
    for _ in 0..6 {
        let (status, run) = call(
            &nodes[0].url,
            reqwest::Method::POST,
            "/v1/workflows/slow/runs",
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 201, "{run}");
        slow.push(run["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    nodes[0].signal("TERM");
    assert!(nodes[0].child.wait().unwrap().success());
    let stopped_ms = now_ms();
    let url = nodes[1].url.clone();
    let mut handed = Vec::new();
    for id in &slow {
        let deadline = Instant::now() + Duration::from_secs(20);
        let run = loop {
            let (_, run) = call(&url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
            if run["status"] == "completed" || Instant::now() > deadline {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(run["status"], "completed", "{run}");
        let b = &run["steps"][1]["attempts"][0];
        assert_eq!(b["node"], ids[1], "{run}");
        let after = b["started_ms"].as_u64().unwrap().saturating_sub(stopped_ms);
        assert!(after < 1000, "{id} went on {after} ms after the node stopped");
        handed.push(after);
    }
    eprintln!("runs went on after SIGTERM (ms after the node exited): {handed:?}");
    nodes[1].signal("TERM");
    let _ = nodes[1].child.wait();
}

const APPROVAL: &str = r#"
name: approval
steps:
  - { id: ok, wait: { event: "go.{{ run.id }}" } }
  - { id: after, module: hostile, input: { mode: context, approved: "{{ steps.ok.output.yes }}" } }
output: "{{ steps.ok.output.yes }}"
"#;

const NAP: &str = r#"
name: nap
steps:
  - { id: a, module: hostile, input: { mode: sleep, ms: 20000 } }
"#;

/// A run one node executes, followed, resumed and canceled through the
/// other: its event stream ends with its end, a posted event reaches its
/// wait, and a cancel with `?wait` answers once it is canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_on_one_node_is_streamed_resumed_and_canceled_through_another() {
    let Some(Cluster { nodes, ids, .. }) = Cluster::start(2) else {
        return;
    };
    push_hostile_and_apply(&nodes[0].url, &[("approval", APPROVAL.into()), ("nap", NAP.into())]).await;

    let (status, run) = call(
        &nodes[0].url,
        reqwest::Method::POST,
        "/v1/workflows/approval/runs",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    // The event stream, through the node that does not execute the run.
    let stream = reqwest::Client::new()
        .get(format!("{}/v1/runs/{id}/events", nodes[1].url))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let body = tokio::spawn(async move { stream.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let event = json!({ "topic": format!("go.{id}"), "data": { "yes": true } });
    let (status, posted) = call(&nodes[1].url, reqwest::Method::POST, "/v1/events", Some(event)).await;
    assert_eq!(status, 202, "{posted}");
    let text = tokio::time::timeout(Duration::from_secs(10), body)
        .await
        .expect("the stream ends with the run")
        .unwrap();
    assert!(text.contains("event: step.waiting"), "{text}");
    assert!(text.contains("event: run.completed"), "{text}");
    let (_, run) = call(&nodes[1].url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
    assert_eq!(
        (run["status"].as_str(), run["output"].as_bool()),
        (Some("completed"), Some(true)),
        "{run}"
    );
    assert_eq!(run["steps"][1]["attempts"][0]["node"], ids[0], "{run}");

    // Each node signs with its own key, and either lists both: a receipt
    // from the node that did not execute the run checks with its key.
    let (status, keys) = call(&nodes[0].url, reqwest::Method::GET, "/v1/keys", None).await;
    assert_eq!(status, 200, "{keys}");
    let mut listed: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["node"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(listed, expected, "{keys}");
    let (status, receipt) = call(
        &nodes[1].url,
        reqwest::Method::GET,
        &format!("/v1/runs/{id}/receipt"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    let receipt: sandstep::signing::Envelope = serde_json::from_value(receipt).unwrap();
    let signer = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["node"] == ids[1])
        .unwrap();
    assert_eq!(receipt.signatures[0].keyid, signer["keyid"].as_str().unwrap());
    let public = sandstep::signing::parse_public(signer["public_key"].as_str().unwrap()).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&receipt.verify(&public).unwrap()).unwrap();
    assert_eq!(statement["predicate"]["node"], ids[1]);
    assert_eq!(statement["predicate"]["run"]["id"], id.as_str());

    // A cancel through the other node, answered once the run is canceled.
    let (_, nap) = call(
        &nodes[0].url,
        reqwest::Method::POST,
        "/v1/workflows/nap/runs",
        Some(json!({})),
    )
    .await;
    let nap = nap["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let (status, canceled) = call(
        &nodes[1].url,
        reqwest::Method::POST,
        &format!("/v1/runs/{nap}/cancel?wait=10s"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, canceled["status"].as_str()),
        (202, Some("canceled")),
        "{canceled}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the cancel took {:?}",
        asked.elapsed()
    );
}

/// `--database` names what it wants, and never echoes a password.
#[test]
fn a_database_url_that_is_not_postgres_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            "mysql://ana:s3cret@db:3306/x",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--database: expected a postgres://USER@HOST:PORT/DB URL, got mysql://ana:***@db:3306/x"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// A code run whose node is killed mid-run is taken over by another node,
/// which replays its journal and goes on: every call recorded once, no
/// recorded step started again, the right output.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_takes_over_a_code_run_from_a_killed_node_by_replaying_it() {
    let Some(Cluster { mut nodes, ids, .. }) = Cluster::start(2) else {
        return;
    };
    let g = crate::support::guests();
    let modules = [
        ("hostile", g.hostile.as_path()),
        ("flow-probe:v1", g.flow_probe.as_path()),
    ];
    let yaml = crate::code_workflows::PROBE.replace("fuel: 200000000", "fuel: 5000000000");
    crate::code_workflows::push_and_apply(&nodes[0].url, &modules, "probe", &yaml).await;
    let input = json!({ "input": { "mode": "chain", "n": 15, "spin": 20000000 } });
    let (status, run) = call(
        &nodes[0].url,
        reqwest::Method::POST,
        "/v1/workflows/probe/runs",
        Some(input),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    // Kill the node running it once a few calls are recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let (_, run) = call(&nodes[0].url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
        let steps = run["steps"].as_array().cloned().unwrap_or_default();
        if steps.len() >= 6 {
            let node = steps[0]["attempts"][0]["node"].as_str().unwrap().to_string();
            break ids.iter().position(|n| *n == node).expect("a node of the cluster");
        }
        assert!(Instant::now() < deadline, "the run made no calls: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nodes[first].kill();
    let other = 1 - first;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (_, run) = call(&nodes[other].url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
        if run["status"] == "completed" || run["status"] == "failed" {
            break run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({ "steps": 30, "last_key": format!("{id}/k-14") }));
    // The last call's step ran on the node that took over.
    assert_eq!(done["steps"][29]["attempts"][0]["node"], ids[other].as_str(), "{done}");
    let events = crate::code_workflows::events_of(&nodes[other].url, &id).await;
    let positions: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "workflow.called")
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=30).collect::<Vec<_>>());
    let mut succeeded = HashSet::new();
    for event in &events {
        let step = event["step"].as_str().unwrap_or_default().to_string();
        match event["type"].as_str().unwrap() {
            "step.succeeded" => assert!(succeeded.insert(step)),
            "step.started" => assert!(!succeeded.contains(&step), "{step} started after it succeeded"),
            _ => {}
        }
    }
    assert_eq!(succeeded.len(), 30);
}
