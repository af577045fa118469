//! Crash recovery with a real process: start `sandstep serve`, start runs
//! with slow steps, `kill -9` it mid-run, restart on the same data directory,
//! and check that every accepted run completes, no recorded step ran twice,
//! and in-flight steps ran again with the same idempotency key.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::process::{self, Served};
use crate::support::server::answer;
use crate::support::*;

fn serve(data_dir: &std::path::Path) -> Served {
    Served::start(data_dir, &[])
}

pub(crate) async fn call(url: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{url}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request).await
}

/// Pushes the hostile module as `hostile` and applies each workflow.
pub(crate) async fn push_hostile_and_apply(url: &str, workflows: &[(&str, String)]) {
    let http = reqwest::Client::new();
    let bytes = std::fs::read(&guests().hostile).unwrap();
    let pushed = http
        .post(format!("{url}/v1/modules?name=hostile"))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    for (name, yaml) in workflows {
        let applied = http
            .put(format!("{url}/v1/workflows/{name}"))
            .header("content-type", "application/yaml")
            .body(yaml.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(applied.status(), 201);
    }
}

pub(crate) async fn wait_until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A run once it has ended.
pub(crate) async fn ended(url: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = call(url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
        if ["completed", "failed", "canceled"].contains(&run["status"].as_str().unwrap_or("")) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for run {id} to end: {run}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts one run of `workflow` per body; their ids.
async fn start_runs(url: &str, workflow: &str, bodies: impl Iterator<Item = Value>) -> Vec<String> {
    let mut runs = Vec::new();
    for body in bodies {
        let path = format!("/v1/workflows/{workflow}/runs");
        let (status, run) = call(url, reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, 201, "{run}");
        runs.push(run["id"].as_str().unwrap().to_string());
    }
    runs
}

/// Waits until `ready` holds for every run in `runs`.
async fn wait_for_every(url: &str, runs: &[String], what: &str, ready: impl Fn(&Value) -> bool) {
    wait_until(what, async || {
        for id in runs {
            let (_, run) = call(url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
            if !ready(&run) {
                return false;
            }
        }
        true
    })
    .await;
}

const SLOW: &str = r#"
name: slow
steps:
  - id: first
    module: hostile
    input: { mode: context }
  - id: slow
    module: hostile
    input: { mode: sleep, ms: 1500, after: "{{ steps.first.output.attempt }}" }
  - id: last
    module: hostile
    input: { mode: context, before: "{{ steps.slow.output }}" }
output: { first: "{{ steps.first.output.attempt }}", last: "{{ steps.last.output.attempt }}" }
"#;

const FLAKY: &str = r#"
name: flaky
steps:
  - id: flaky
    module: hostile
    input: { mode: flaky, succeed_at: 2 }
    retry: { max_attempts: 3, initial_interval: 2s, jitter: 0 }
output: "{{ steps.flaky.output.attempt }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_completes_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    push_hostile_and_apply(&server.url, &[("slow", SLOW.into()), ("flaky", FLAKY.into())]).await;

    let mut slow_runs = Vec::new();
    for i in 0..4 {
        let (status, run) = call(
            &server.url,
            reqwest::Method::POST,
            "/v1/workflows/slow/runs",
            Some(json!({ "idempotency_key": format!("s{i}") })),
        )
        .await;
        assert_eq!(status, 201, "{run}");
        slow_runs.push(run["id"].as_str().unwrap().to_string());
    }
    let (_, flaky) = call(
        &server.url,
        reqwest::Method::POST,
        "/v1/workflows/flaky/runs",
        Some(json!({})),
    )
    .await;
    let flaky_id = flaky["id"].as_str().unwrap().to_string();

    // Wait until every slow run is inside `slow` and the flaky run is in its backoff.
    let url = server.url.clone();
    wait_until("slow steps in flight and a retry pending", async || {
        for id in slow_runs.iter().chain([&flaky_id]) {
            let (_, run) = call(&url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
            let step = if *id == flaky_id {
                &run["steps"][0]
            } else {
                &run["steps"][1]
            };
            let attempts = step["attempts"].as_array().map_or(0, Vec::len);
            let wanted = if *id == flaky_id {
                step["attempts"][0]["status"] == "failed"
            } else {
                attempts == 1
            };
            if !wanted {
                return false;
            }
        }
        true
    })
    .await;

    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    let restarted = serve(dir.path());
    let url = restarted.url.clone();
    wait_until("every run to end after the restart", async || {
        let (_, list) = call(&url, reqwest::Method::GET, "/v1/runs?limit=100", None).await;
        let runs = list["runs"].as_array().cloned().unwrap_or_default();
        runs.len() == 5 && runs.iter().all(|r| r["status"] == "completed")
    })
    .await;

    for id in &slow_runs {
        let (_, run) = call(&url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
        assert_eq!(run["status"], "completed", "{run}");
        let attempts = |step: usize| run["steps"][step]["attempts"].as_array().unwrap().clone();
        // `first` was recorded before the crash: it never ran again.
        assert_eq!(attempts(0).len(), 1, "{run}");
        assert_eq!(run["output"]["first"], 1);
        // `slow` was in flight: interrupted, then a second attempt, same key.
        let slow = attempts(1);
        assert_eq!(slow.len(), 2, "{run}");
        assert_eq!(
            (slow[0]["status"].clone(), slow[1]["status"].clone()),
            (json!("interrupted"), json!("succeeded"))
        );
        assert_eq!(
            (slow[0]["attempt"].clone(), slow[1]["attempt"].clone()),
            (json!(1), json!(2))
        );
        assert_eq!(slow[0]["idempotency_key"], format!("{id}/slow"));
        assert_eq!(slow[1]["idempotency_key"], slow[0]["idempotency_key"]);
        assert_eq!(attempts(2).len(), 1);
    }
    // The retry backoff timer fired after the restart.
    let (_, run) = call(&url, reqwest::Method::GET, &format!("/v1/runs/{flaky_id}"), None).await;
    assert_eq!(run["output"], 2, "{run}");
    let statuses: Vec<Value> = run["steps"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("failed"), json!("succeeded")]);

    // An idempotency key used before the crash still answers the same run.
    let (status, again) = call(
        &url,
        reqwest::Method::POST,
        "/v1/workflows/slow/runs",
        Some(json!({ "idempotency_key": "s0" })),
    )
    .await;
    assert_eq!((status, again["id"].clone()), (200, json!(slow_runs[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_public_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = process::command()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen on 0.0.0.0:0 without API tokens"));
}

/// A cancel the API accepted is never lost: it is stored in the run's
/// inbox before the answer. Each run's cancel is answered as soon as it is
/// stored (`?wait=0s`) while fan-out runs keep the store's writer busy, and
/// the server is killed with `kill -9` right after the answers, often
/// before a run recorded `canceling`; after a restart every run ends
/// `canceled`, not `completed`, and the step after the sleep never ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_cancel_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let items: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    let busy = format!(
        "name: busy\nconcurrency: 64\nsteps:\n  - id: each\n    module: hostile\n    for_each: [{}]\n    input: {{ mode: context }}\n",
        items.join(", ")
    );
    push_hostile_and_apply(
        &server.url,
        &[("slow", SLOW.replace("ms: 1500", "ms: 4000")), ("busy", busy)],
    )
    .await;

    let runs = start_runs(&server.url, "slow", (0..24).map(|_| json!({}))).await;
    let url = server.url.clone();
    wait_for_every(&url, &runs, "every run inside its slow step", |run| {
        run["steps"][1]["status"] == "running"
    })
    .await;

    for _ in 0..8 {
        let (status, run) = call(&url, reqwest::Method::POST, "/v1/workflows/busy/runs", Some(json!({}))).await;
        assert_eq!(status, 201, "{run}");
    }
    let paths: Vec<String> = runs.iter().map(|id| format!("/v1/runs/{id}/cancel?wait=0s")).collect();
    let cancels = paths
        .iter()
        .map(|path| call(&url, reqwest::Method::POST, path, Some(json!({}))));
    for (status, run) in futures_util::future::join_all(cancels).await {
        assert_eq!(status, 202, "{run}");
    }
    server.kill();

    let server = serve(dir.path());
    for id in &runs {
        let ended = ended(&server.url, id).await;
        assert_eq!(ended["status"], "canceled", "{ended}");
        assert_eq!(
            ended["steps"][2]["attempts"],
            json!([]),
            "the last step never ran: {ended}"
        );
    }
}

const APPROVE: &str = r#"
name: approve
steps:
  - id: first
    module: hostile
    input: { mode: context }
  - id: approve
    needs: [first]
    wait: { event: "approve.{{ inputs.n }}", timeout: 1h }
  - id: nap
    needs: [first]
    sleep: 1500ms
  - id: last
    needs: [approve, nap]
    module: hostile
    input: { mode: context, approved: "{{ steps.approve.output }}" }
output: { first: "{{ steps.first.output.attempt }}", by: "{{ steps.approve.output.by }}", last: "{{ steps.last.output.attempt }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_runs_survive_kill_9_and_complete_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    push_hostile_and_apply(&server.url, &[("approve", APPROVE.to_string())]).await;
    let runs = start_runs(&server.url, "approve", (0..5).map(|n| json!({ "input": { "n": n } }))).await;
    let url = server.url.clone();
    wait_for_every(&url, &runs, "every run paused", |run| run["status"] == "paused").await;
    // Two approvals reach the store before the crash; the rest after it.
    for n in 0..2 {
        let body = json!({ "topic": format!("approve.{n}"), "data": { "by": format!("before-{n}") } });
        let (status, posted) = call(&url, reqwest::Method::POST, "/v1/events", Some(body)).await;
        assert_eq!(status, 202, "{posted}");
    }
    server.kill();

    let server = serve(dir.path());
    for n in 2..5 {
        let body = json!({ "topic": format!("approve.{n}"), "data": { "by": format!("after-{n}") } });
        let (status, posted) = call(&server.url, reqwest::Method::POST, "/v1/events", Some(body)).await;
        assert_eq!(status, 202, "{posted}");
    }
    for (n, id) in runs.iter().enumerate() {
        let ended = ended(&server.url, id).await;
        assert_eq!(ended["status"], "completed", "{ended}");
        let by = if n < 2 {
            format!("before-{n}")
        } else {
            format!("after-{n}")
        };
        // The first step's recorded completion stood: it ran once.
        assert_eq!(ended["output"], json!({ "first": 1, "by": by, "last": 1 }), "{ended}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_event_triggers_start_each_run_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let every_second = "name: every\ntriggers:\n  - schedule: \"* * * * * *\"\n    catch_up: all\nsteps:\n  - id: s\n    module: hostile\n    input: { mode: context }\n";
    let on_event = "name: hook\ntriggers:\n  - on_event: hit\nsteps:\n  - id: s\n    module: hostile\n    input: { mode: context }\n";
    push_hostile_and_apply(
        &server.url,
        &[("every", every_second.to_string()), ("hook", on_event.to_string())],
    )
    .await;
    let mut posted = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        for n in 0..5 {
            let body = json!({ "topic": "hit", "data": { "round": round, "n": n } });
            let (status, event) = call(&server.url, reqwest::Method::POST, "/v1/events", Some(body)).await;
            assert_eq!(status, 202, "{event}");
            posted.push(event["id"].as_str().unwrap().to_string());
        }
        server.kill();
        server = serve(dir.path());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let url = server.url.clone();
    let list = async |workflow: &str| -> Vec<Value> {
        let (_, listed) = call(
            &url,
            reqwest::Method::GET,
            &format!("/v1/runs?workflow={workflow}&limit=500"),
            None,
        )
        .await;
        let mut runs = Vec::new();
        for run in listed["runs"].as_array().unwrap() {
            let id = run["id"].as_str().unwrap();
            runs.push(
                call(&url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None)
                    .await
                    .1,
            );
        }
        runs
    };
    let mut ticks: Vec<String> = list("every")
        .await
        .iter()
        .map(|r| r["trigger"]["tick"].as_str().unwrap().to_string())
        .collect();
    let count = ticks.len();
    ticks.sort();
    ticks.dedup();
    assert_eq!(ticks.len(), count, "a tick started two runs: {ticks:?}");
    assert!(count >= 4, "{count} ticks in about 5.5 s");
    // Each event started exactly one run, whatever the kills interrupted.
    wait_until("every event dispatched", async || {
        list("hook").await.len() >= posted.len()
    })
    .await;
    let mut started: Vec<String> = list("hook")
        .await
        .iter()
        .map(|r| r["trigger"]["event"].as_str().unwrap().to_string())
        .collect();
    started.sort();
    posted.sort();
    assert_eq!(started, posted);
}
