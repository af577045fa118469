//! The node that runs each attempt, the live nodes (`GET /v1/nodes`) and
//! the ownership metrics, on one node over SQLite.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::server::TestServer;
use crate::support::{query, sql};

const SLOW: &str = r#"
name: slow
steps:
  - { id: nap, module: hostile, input: { mode: sleep, ms: 1000 } }
  - { id: after, module: echo, input: { n: "{{ steps.nap.output.slept_ms }}" } }
"#;

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_list_the_live_node_and_attempts_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("slow", SLOW).await.0, 201);
    let node = std::fs::read_to_string(server.data_dir.join("node-id")).unwrap();
    let (status, answer) = server.get("/v1/nodes").await;
    assert_eq!(status, 200, "{answer}");
    let nodes = answer["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{answer}");
    assert_eq!(nodes[0]["id"], node.trim());
    assert_eq!(nodes[0]["listen"], server.url.trim_start_matches("http://"));
    let seen = nodes[0]["last_seen"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(seen).is_ok(), "{seen}");
    assert_eq!(nodes[0]["runs_owned"], 0);

    // While a run goes on, this node owns it.
    let id = server.start_run("slow").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, answer) = server.get("/v1/nodes").await;
    assert_eq!(answer["nodes"][0]["runs_owned"], 1, "{answer}");
    assert_eq!(metric(&server.metrics().await, "sandstep_runs_owned"), Some(1.0));
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(metric(&server.metrics().await, "sandstep_runs_owned"), Some(0.0));

    // Each attempt names its node and when it started and ended.
    for step in run["steps"].as_array().unwrap() {
        let attempt = &step["attempts"][0];
        assert_eq!(attempt["node"], node.trim(), "{attempt}");
        let (started, ended) = (
            attempt["started_ms"].as_u64().unwrap(),
            attempt["ended_ms"].as_u64().unwrap(),
        );
        assert!(started <= ended, "{attempt}");
    }
    let nap = &run["steps"][0]["attempts"][0];
    assert!(
        nap["ended_ms"].as_u64().unwrap() - nap["started_ms"].as_u64().unwrap() >= 1000,
        "{nap}"
    );
    let started = query(
        &server.data_dir,
        &format!("SELECT body FROM events WHERE run_id = '{id}' AND type = 'step.started'"),
    )
    .await;
    for row in started {
        let body: Value = serde_json::from_str(row[0].as_str().unwrap()).unwrap();
        assert_eq!(body["node"], node.trim(), "{body}");
    }

    // A clean stop removes the node at once.
    server.stop().await;
    assert_eq!(query(dir.path(), "SELECT COUNT(*) FROM nodes").await[0][0], 0);
}

/// A run left under another node's expired lease is taken over at start
/// (`sandstep_lease_takeovers_total`) and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_under_an_expired_lease_is_taken_over() {
    let yaml = r#"
name: approval
steps:
  - { id: ok, wait: { event: "go.{{ run.id }}" } }
"#;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("approval", yaml).await.0, 201);
    let id = server.start_run("approval").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.get(&format!("/v1/runs/{id}")).await.1["status"] != "paused" {
        assert!(std::time::Instant::now() < deadline, "the run never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
    // As if a node that died held it.
    sql(
        dir.path(),
        &["UPDATE runs SET owner = 'node-gone', lease_until_ms = 1, fence = fence + 1"],
    )
    .await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    assert_eq!(
        metric(&server.metrics().await, "sandstep_lease_takeovers_total"),
        Some(1.0)
    );
    let (status, _) = server
        .post_json(
            "/v1/events",
            json!({ "topic": format!("go.{id}"), "data": { "approved": true } }),
        )
        .await;
    assert_eq!(status, 202);
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], Value::Null);
    assert_eq!(run["steps"][0]["output"], json!({ "approved": true }));
    server.stop().await;
}

/// `serve --lease 2s`: the node's lease (and its runs') is 2 s past its
/// last heartbeat; a `kill -9` leaves it to run out. Bad leases are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_lease_sets_how_long_a_node_holds_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = crate::support::process::Served::start(dir.path(), &["--lease", "2s"]);
    let http = reqwest::Client::new();
    // The heartbeat (every 2/3 s) moves last_seen on.
    let url = format!("{}/v1/nodes", served.url);
    let nodes = || async { http.get(&url).send().await.unwrap().json::<Value>().await.unwrap() };
    let first = nodes().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = nodes().await;
    assert_eq!(later["nodes"].as_array().unwrap().len(), 1, "{later}");
    assert_ne!(first["nodes"][0]["last_seen"], later["nodes"][0]["last_seen"]);
    served.kill();
    let rows = query(dir.path(), "SELECT lease_until_ms - last_seen_ms FROM nodes").await;
    assert_eq!(rows.len(), 1);
    let lease = rows[0][0].as_i64().unwrap();
    assert!(
        (1990..=2000).contains(&lease),
        "the lease is 2 s past the last heartbeat: {lease}"
    );

    for bad in ["0s", "2h", "soon"] {
        let out = crate::support::process::command()
            .args(["serve", "--listen", "127.0.0.1:0", "--lease", bad, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid value") && stderr.contains("--lease"),
            "{stderr}"
        );
    }
}
