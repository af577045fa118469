//! Upgrading runs in flight, black-box on a real server (SQLite, or
//! PostgreSQL under the test script's second pass): a run moves to a new
//! version only when its history fits it, a diverging one is refused and
//! left untouched, the dry run changes nothing, and an upgrade racing an
//! event or a cancel loses neither.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::server::*;
use crate::support::*;

use crate::waits::wait_status;

/// Version 1: `a` runs, `approve` waits, `b` runs.
const FLOW_V1: &str = r#"
name: flow
steps:
  - id: a
    module: echo
    input: { n: 1 }
  - id: approve
    needs: [a]
    wait: { event: "go.{{ run.id }}" }
  - id: b
    needs: [approve]
    module: echo
    input: { v: 1 }
output: { b: "{{ steps.b.output }}" }
"#;

/// Changes the module of `a`, which a paused run of version 1 has run.
const FLOW_V2_DIVERGES: &str = r#"
name: flow
steps:
  - id: a
    module: hello
    input: { n: 1 }
  - id: approve
    needs: [a]
    wait: { event: "go.{{ run.id }}" }
  - id: b
    needs: [approve]
    module: echo
    input: { v: 2 }
output: { b: "{{ steps.b.output }}" }
"#;

/// Keeps `a` and `approve`, changes `b` (not started) and adds `c`.
const FLOW_V3_FITS: &str = r#"
name: flow
steps:
  - id: a
    module: echo
    input: { n: 1 }
  - id: approve
    needs: [a]
    wait: { event: "go.{{ run.id }}" }
  - id: b
    needs: [approve]
    module: echo
    input: { v: 3 }
  - id: c
    needs: [b]
    module: echo
    input: { c: true }
output: { b: "{{ steps.b.output }}", c: "{{ steps.c.output }}" }
"#;

async fn upgrade(server: &TestServer, id: &str, body: Option<Value>) -> (u16, Value) {
    let request = server.request(reqwest::Method::POST, &format!("/v1/runs/{id}/upgrade"));
    answer(match body {
        Some(body) => request.json(&body),
        None => request,
    })
    .await
}

async fn check(server: &TestServer, workflow: &str, yaml: &str) -> (u16, Value) {
    answer(
        server
            .request(reqwest::Method::POST, &format!("/v1/workflows/{workflow}/check"))
            .header("content-type", "application/yaml")
            .body(yaml.to_string()),
    )
    .await
}

async fn event_types(server: &TestServer, id: &str) -> Vec<Value> {
    let response = server
        .request(reqwest::Method::GET, &format!("/v1/runs/{id}/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    // An unfinished run's stream stays open: read what is there now.
    let mut events = Vec::new();
    let mut body = response;
    let mut text = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_millis(300), body.chunk())
        .await
        .unwrap_or(Ok(None))
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data:") {
            events.push(serde_json::from_str::<Value>(data.trim()).unwrap());
        }
    }
    events
}

async fn post_event(server: &TestServer, topic: &str, data: Value) {
    let (status, body) = server
        .post_json("/v1/events", json!({ "topic": topic, "data": data }))
        .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_moves_to_a_version_that_fits_and_a_diverging_one_is_refused() {
    let server = TestServer::with_workflow("flow", FLOW_V1).await;
    let id = server.start_run("flow").await;
    wait_status(&server, &id, "paused").await;
    for yaml in [FLOW_V2_DIVERGES, FLOW_V3_FITS] {
        let (status, body) = server.apply("flow", yaml).await;
        assert_eq!(status, 201, "{body}");
    }
    let before = event_types(&server, &id).await;

    // Version 2 changed the module of a step the run has run.
    let (status, body) = upgrade(&server, &id, Some(json!({ "version": 2 }))).await;
    assert_eq!((status, problem(&body)), (409, "upgrade-diverges"), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("step \"a\" has started: it runs module echo (sha256:"),
        "{detail}"
    );
    assert!(
        detail.contains("and in version 2 it runs module hello (sha256:"),
        "{detail}"
    );
    let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(
        (run["version"].clone(), run["status"].clone()),
        (json!(1), json!("paused")),
        "{run}"
    );
    assert!(run.get("upgraded_from").is_none(), "{run}");
    assert_eq!(
        event_types(&server, &id).await,
        before,
        "a refused upgrade left the run untouched"
    );

    // The dry run: the latest version's text fits, version 2's does not.
    let (status, checked) = check(&server, "flow", FLOW_V3_FITS).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["version"], 3, "{checked}");
    assert_eq!(
        checked["runs"],
        json!([{ "id": id, "status": "paused", "version": 1, "upgradable": true }])
    );
    let (_, checked) = check(&server, "flow", FLOW_V2_DIVERGES).await;
    assert_eq!(
        checked["version"], 4,
        "a text that is not the latest would be a new version"
    );
    assert_eq!(checked["runs"][0]["upgradable"], false, "{checked}");
    assert!(
        checked["runs"][0]["divergence"]
            .as_str()
            .unwrap()
            .starts_with("step \"a\" has started"),
        "{checked}"
    );
    let (status, body) = check(&server, "other", FLOW_V3_FITS).await;
    assert_eq!((status, problem(&body)), (422, "name-mismatch"), "{body}");

    // No version: the latest, which fits.
    let (status, run) = upgrade(&server, &id, None).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["version"].clone(), run["upgraded_from"].clone()),
        (json!(3), json!(1)),
        "{run}"
    );
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["a", "approve", "b", "c"], "{run}");
    // The run page says where it came from.
    let browser = crate::support::browser::Browser::open().await;
    browser.goto(&format!("{}/ui#/runs/{id}", server.url)).await;
    assert_eq!(browser.text("#upgraded-from").await, "v1");
    assert!(browser.text(".run-header .facts").await.contains("flow v3"));
    browser.close().await;
    // Asked again: already there.
    let (status, again) = upgrade(&server, &id, Some(json!({ "version": 3 }))).await;
    assert_eq!((status, again["version"].clone()), (200, json!(3)), "{again}");

    post_event(&server, &format!("go.{id}"), json!({ "ok": true })).await;
    let ended = server.wait_run(&id).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(
        ended["output"],
        json!({ "b": { "v": 3 }, "c": { "c": true } }),
        "{ended}"
    );
    let upgraded: Vec<Value> = event_types(&server, &id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "run.upgraded")
        .collect();
    assert_eq!(upgraded.len(), 1, "{upgraded:?}");
    assert_eq!(
        (upgraded[0]["from"].clone(), upgraded[0]["to"].clone()),
        (json!(1), json!(3))
    );

    let (status, body) = upgrade(&server, &id, None).await;
    assert_eq!((status, problem(&body)), (409, "run-ended"), "{body}");
    let (status, _) = upgrade(&server, "0192ffff-0000-7000-8000-000000000000", None).await;
    assert_eq!(status, 404);
    let other = server.start_run("flow").await;
    let (status, body) = upgrade(&server, &other, Some(json!({ "version": 99 }))).await;
    assert_eq!((status, problem(&body)), (404, "not-found"), "{body}");
    let (status, body) = upgrade(&server, &other, Some(json!({ "version": 99.0 }))).await;
    assert_eq!(
        (status, problem(&body)),
        (404, "not-found"),
        "a whole float is a version: {body}"
    );
    let (status, body) = upgrade(&server, &other, Some(json!({ "version": 1.5 }))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = upgrade(&server, &other, Some(json!({ "version": 0 }))).await;
    assert_eq!((status, body["field"].clone()), (422, json!("version")), "{body}");
    let (status, body) = upgrade(&server, &other, Some(json!({ "to": 2 }))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("unknown field `to`"),
        "{body}"
    );
}

pub const PROBE: &str = "
name: probe
code: flow-probe
defaults:
  grants: {}
workflow_limits: { fuel: 200000000, memory: 32MiB }
";

/// A code run moves when its journal replays against the new version:
/// `patched` keeps a run recorded before a change on the old path, and
/// code that changes without it diverges, naming the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_run_moves_when_its_journal_replays_and_patched_keeps_old_runs_on_the_old_path() {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    let (status, body) = server.push("flow-probe", &guests().flow_probe).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.apply("probe", PROBE).await;
    assert_eq!(status, 201, "{body}");
    let mut runs = Vec::new();
    for mode in ["patch", "unguarded"] {
        let (status, run) = server
            .post_json(
                "/v1/workflows/probe/runs",
                json!({ "input": { "mode": mode, "topic": format!("go.{mode}") } }),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        runs.push(run["id"].as_str().unwrap().to_string());
    }
    for id in &runs {
        wait_status(&server, id, "paused").await;
    }
    let v2 = format!("{PROBE}description: the audit step\n");
    let (status, checked) = check(&server, "probe", &v2).await;
    assert_eq!((status, checked["version"].clone()), (200, json!(2)), "{checked}");
    assert_eq!(checked["runs"][0]["upgradable"], true, "{checked}");
    assert_eq!(checked["runs"][1]["upgradable"], false, "{checked}");
    let divergence = checked["runs"][1]["divergence"].as_str().unwrap();
    assert!(divergence.starts_with("call 2: recorded wait"), "{divergence}");
    assert!(divergence.contains("got step \"audit\""), "{divergence}");
    let (status, body) = server.apply("probe", &v2).await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = upgrade(&server, &runs[1], None).await;
    assert_eq!((status, problem(&body)), (409, "upgrade-diverges"), "{body}");
    assert_eq!(body["detail"], divergence, "the refusal names what the dry run named");
    let (status, run) = upgrade(&server, &runs[0], None).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["version"].clone(), run["upgraded_from"].clone()),
        (json!(2), json!(1)),
        "{run}"
    );

    for mode in ["patch", "unguarded"] {
        post_event(&server, &format!("go.{mode}"), json!({ "by": mode })).await;
    }
    let moved = server.wait_run(&runs[0]).await;
    assert_eq!(moved["status"], "completed", "{moved}");
    // Recorded before the patch: no audit; after the approval, the new path.
    assert_eq!(
        moved["output"],
        json!({ "audit": false, "after": true, "approval": { "by": "patch" } }),
        "{moved}"
    );
    let kept = server.wait_run(&runs[1]).await;
    assert_eq!(kept["version"], 1, "{kept}");
    assert_eq!(
        kept["output"],
        json!({ "audit": false, "after": false, "approval": { "by": "unguarded" } }),
        "{kept}"
    );
}

/// Upgrades race events and cancels on paused and executing runs: every
/// accepted event and cancel takes effect, and an upgrade answered 200
/// left the run at the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_racing_events_and_cancels_lose_neither() {
    let slow_v1 = FLOW_V1.replace(
        "    module: echo\n    input: { n: 1 }",
        "    module: hostile\n    input: { mode: spin, n: 40000000 }",
    );
    let slow_v2 = FLOW_V3_FITS.replace(
        "    module: echo\n    input: { n: 1 }",
        "    module: hostile\n    input: { mode: spin, n: 40000000 }",
    );
    let server = TestServer::with_workflow("flow", &slow_v1).await;
    let mut runs = Vec::new();
    for _ in 0..6 {
        runs.push(server.start_run("flow").await);
    }
    let (status, body) = server.apply("flow", &slow_v2).await;
    assert_eq!(status, 201, "{body}");
    // Runs 0 and 3 are upgraded with nothing racing (0 while `a` runs,
    // 3 paused): each moves. The others race an event (1, 4) or a cancel
    // (2, 5), while `a` runs (1, 2) or paused (4, 5).
    let mut answers = Vec::new();
    for (n, id) in runs.iter().enumerate() {
        if n >= 3 {
            wait_status(&server, id, "paused").await;
        }
        let racing = async {
            match n % 3 {
                0 => {}
                1 => {
                    wait_status(&server, id, "paused").await;
                    post_event(&server, &format!("go.{id}"), json!({ "n": n })).await;
                }
                _ => {
                    let path = format!("/v1/runs/{id}/cancel?wait=0s");
                    let (status, body) = server.post_json(&path, json!({})).await;
                    assert_eq!(status, 202, "{body}");
                }
            }
        };
        let ((status, body), ()) = tokio::join!(upgrade(&server, id, None), racing);
        if n % 3 == 0 {
            assert_eq!(status, 200, "{body}");
            post_event(&server, &format!("go.{id}"), json!({ "n": n })).await;
        }
        answers.push((status, body));
    }
    for (n, id) in runs.iter().enumerate() {
        let ended = server.wait_run(id).await;
        let (status, body) = &answers[n];
        if n % 3 == 2 {
            assert_eq!(ended["status"], "canceled", "{ended}");
        } else {
            assert_eq!(ended["status"], "completed", "{ended}");
        }
        match status {
            200 => {
                assert_eq!(ended["version"], 2, "upgraded: {ended}");
                assert_eq!(ended["upgraded_from"], 1, "{ended}");
                if n % 3 != 2 {
                    assert_eq!(ended["output"]["c"], json!({ "c": true }), "{ended}");
                }
            }
            409 => {
                assert_eq!(problem(body), "run-ended", "{body}");
                assert_eq!(ended["version"], 1, "{ended}");
            }
            other => panic!("run {n}: the upgrade answered {other}: {body}"),
        }
    }
}

/// Two approvals around `b`: a run paused at the first has not run `b`, a
/// run paused at the second has.
const TWO_WAITS: &str = r#"
name: two
steps:
  - id: a
    module: echo
    input: { n: 1 }
  - id: first
    needs: [a]
    wait: { event: "first.{{ run.id }}" }
  - id: b
    needs: [first]
    module: echo
    input: { b: 1 }
  - id: second
    needs: [b]
    wait: { event: "second.{{ run.id }}" }
output: { b: "{{ steps.b.output }}" }
"#;

/// `workflow check` lists each unfinished run's verdict and exits 1 when
/// one would not move; `workflow apply --upgrade-running` moves the ones
/// that fit and lists the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_checks_and_applies_with_upgrade_running() {
    let server = TestServer::with_workflow("two", TWO_WAITS).await;
    let early = server.start_run("two").await;
    let late = server.start_run("two").await;
    wait_status(&server, &early, "paused").await;
    wait_status(&server, &late, "paused").await;
    post_event(&server, &format!("first.{late}"), json!({})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, run) = server.get(&format!("/v1/runs/{late}")).await;
        if run["status"] == "paused" && run["steps"][2]["status"] == "succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Version 2 runs `b` with another module.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.yaml");
    let v2 = TWO_WAITS.replace(
        "    module: echo\n    input: { b: 1 }",
        "    module: hello\n    input: { b: 1 }",
    );
    std::fs::write(&file, &v2).unwrap();
    let file = file.to_str().unwrap().to_string();
    let url = server.url.clone();
    let (checked, applied) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            process::command()
                .args(args)
                .env("SANDSTEP_URL", &url)
                .output()
                .expect("the binary runs")
        };
        (
            run(&["workflow", "check", &file]),
            run(&["workflow", "apply", &file, "--upgrade-running"]),
        )
    })
    .await
    .unwrap();
    let stdout = |out: &std::process::Output| -> Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    assert_eq!(checked.status.code(), Some(1), "a run would not move");
    let verdicts = stdout(&checked);
    assert_eq!(verdicts["version"], 2, "{verdicts}");
    assert_eq!(verdicts["runs"][0]["id"], early.as_str(), "{verdicts}");
    assert_eq!(verdicts["runs"][0]["upgradable"], true, "{verdicts}");
    assert_eq!(verdicts["runs"][1]["upgradable"], false, "{verdicts}");
    let divergence = verdicts["runs"][1]["divergence"].as_str().unwrap();
    assert!(
        divergence.starts_with("step \"b\" has started: it runs module echo"),
        "{divergence}"
    );

    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let applied = stdout(&applied);
    assert_eq!(applied["version"], 2, "{applied}");
    assert_eq!(applied["upgraded"], json!([early]), "{applied}");
    assert_eq!(
        applied["not_upgraded"],
        json!([{ "id": late, "version": 1, "divergence": divergence }]),
        "{applied}"
    );
    let (_, moved) = server.get(&format!("/v1/runs/{early}")).await;
    assert_eq!(
        (moved["version"].clone(), moved["upgraded_from"].clone()),
        (json!(2), json!(1))
    );
    let (_, kept) = server.get(&format!("/v1/runs/{late}")).await;
    assert_eq!(kept["version"], 1, "{kept}");
}
