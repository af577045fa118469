//! What the web UI reads, through the public API on a real server: every
//! step of a run's pinned version with its `needs`, kind and each attempt's
//! rendered input; a waiting step's `wait`; runs listed by creation time
//! with step counts; a workflow's declared inputs and triggers; and the UI's
//! own files.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::server::*;
use crate::waits::wait_status;

const SHAPES: &str = r#"
name: shapes
inputs:
  who: { type: string, required: true }
  ticket: { type: string, default: "T-1" }
steps:
  - id: a
    module: echo
    input: { who: "{{ inputs.who }}", n: 1 }
  - id: b
    module: echo
    input: { from_a: "{{ steps.a.output.who }}" }
  - id: c
    needs: [a]
    module: hello
    input: { name: "{{ inputs.who }}" }
  - id: gate
    needs: [b, c]
    wait:
      event: "go.{{ inputs.ticket }}"
      timeout: 1h
  - id: last
    module: echo
    input: { said: "{{ steps.c.output.greeting }}", gate: "{{ steps.gate.output }}" }
"#;

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_shown_with_its_needs_kind_wait_and_rendered_input() {
    let server = TestServer::with_workflow("shapes", SHAPES).await;
    let (status, run) = server
        .post_json("/v1/workflows/shapes/runs", json!({ "input": { "who": "Ada" } }))
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let started_ms = run["created_ms"].as_i64().unwrap();
    let run = wait_status(&server, &id, "paused").await;

    let ids: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["a", "b", "c", "gate", "last"],
        "every step, started or not, in order"
    );
    let needs = |id: &str| step(&run, id)["needs"].clone();
    assert_eq!(needs("a"), json!([]));
    assert_eq!(needs("b"), json!(["a"]), "from a template");
    assert_eq!(needs("c"), json!(["a"]), "explicit");
    assert_eq!(needs("gate"), json!(["b", "c"]));
    assert_eq!(needs("last"), json!(["c", "gate"]));
    assert_eq!(
        (&step(&run, "a")["kind"], &step(&run, "a")["module"]),
        (&json!("module"), &json!("echo"))
    );
    assert_eq!(step(&run, "gate")["kind"], "wait");

    // Each attempt's input as rendered.
    assert_eq!(step(&run, "a")["attempts"][0]["input"], json!({ "who": "Ada", "n": 1 }));
    assert_eq!(step(&run, "b")["attempts"][0]["input"], json!({ "from_a": "Ada" }));
    assert_eq!(step(&run, "c")["attempts"][0]["input"], json!({ "name": "Ada" }));

    // The waiting step's topic as resolved and when it times out.
    let gate = step(&run, "gate");
    assert_eq!(gate["status"], "waiting");
    assert_eq!(gate["wait"]["topic"], "go.T-1");
    let timeout_at = gate["wait"]["timeout_at"].as_str().expect("an RFC 3339 time");
    let timeout_ms = chrono::DateTime::parse_from_rfc3339(timeout_at)
        .unwrap()
        .timestamp_millis();
    assert!((timeout_ms - started_ms - 3_600_000).abs() < 10_000, "{timeout_at}");
    let last = step(&run, "last");
    assert_eq!((&last["status"], &last["attempts"]), (&json!("pending"), &json!([])));
    assert!(last.get("wait").is_none());

    // The list counts the steps that ended.
    let (_, list) = server.get("/v1/runs?workflow=shapes").await;
    assert_eq!(list["runs"][0]["id"], id.as_str());
    assert_eq!(
        list["runs"][0]["steps"],
        json!({ "total": 5, "succeeded": 3, "failed": 0, "skipped": 0, "canceled": 0 })
    );

    let (status, _) = server
        .post_json("/v1/events", json!({ "topic": "go.T-1", "data": { "ok": true } }))
        .await;
    assert_eq!(status, 202);
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(step(&run, "gate").get("wait").is_none(), "no wait once resumed");
    assert_eq!(
        step(&run, "last")["attempts"][0]["input"],
        json!({ "said": "Hello, Ada!", "gate": { "ok": true } })
    );
    let (_, list) = server.get("/v1/runs?workflow=shapes").await;
    assert_eq!(list["runs"][0]["steps"]["succeeded"], 5);

    // A re-run counts the steps it reused as succeeded.
    let (status, rerun) = server
        .post_json(&format!("/v1/runs/{id}/rerun"), json!({ "from": "last" }))
        .await;
    assert_eq!(status, 201, "{rerun}");
    let rerun_id = rerun["id"].as_str().unwrap();
    server.wait_run(rerun_id).await;
    let (_, list) = server.get("/v1/runs?workflow=shapes").await;
    assert_eq!(list["runs"][0]["id"], rerun_id);
    assert_eq!(
        list["runs"][0]["steps"],
        json!({ "total": 5, "succeeded": 5, "failed": 0, "skipped": 0, "canceled": 0 })
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_by_creation_time_range() {
    let server = TestServer::with_workflow(
        "tiny",
        "name: tiny\nsteps:\n  - id: one\n    module: echo\n    input: { n: 1 }\n",
    )
    .await;
    let mut created = Vec::new();
    for _ in 0..3 {
        let id = server.start_run("tiny").await;
        let run = server.wait_run(&id).await;
        created.push((id, run["created_ms"].as_i64().unwrap()));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let ids = |list: &Value| -> Vec<String> {
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, list) = server
        .get(&format!("/v1/runs?created_after={}", at(created[1].1)))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), [created[2].0.clone(), created[1].0.clone()]);
    let (_, list) = server
        .get(&format!("/v1/runs?created_before={}", at(created[1].1)))
        .await;
    assert_eq!(ids(&list), [created[0].0.clone()]);
    let (_, list) = server
        .get(&format!(
            "/v1/runs?created_after={}&created_before={}",
            at(created[0].1 + 1),
            at(created[2].1)
        ))
        .await;
    assert_eq!(ids(&list), [created[1].0.clone()]);
    // Offsets other than Z are the same instant.
    let local = chrono::DateTime::from_timestamp_millis(created[1].1)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    let (_, list) = server
        .get(&format!("/v1/runs?created_after={}", local.replace('+', "%2B")))
        .await;
    assert_eq!(ids(&list).len(), 2, "{local}");

    let (status, body) = server.get("/v1/runs?created_after=yesterday").await;
    assert_eq!((status, problem(&body)), (400, "bad-request"), "{body}");
    assert_eq!(body["field"], "created_after");
    assert!(body["detail"].as_str().unwrap().contains("RFC 3339"), "{body}");
    // An empty value is not a date-time either (the OpenAPI format says so).
    let (status, body) = server.get("/v1/runs?created_before=").await;
    assert_eq!((status, problem(&body)), (400, "bad-request"), "{body}");
    assert_eq!(body["field"], "created_before");
    server.stop().await;
}

const SCHEDULED: &str = r#"
name: nightly
description: Builds the nightly report
inputs:
  region: { type: string, required: true, description: "Where" }
  limit: { type: integer, default: 3 }
  dry: { type: boolean }
triggers:
  - schedule: "0 3 * * *"
    timezone: Europe/Paris
    input: { region: eu }
  - on_event: report.requested
steps:
  - id: one
    module: echo
    input: { region: "{{ inputs.region }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_shows_its_declared_inputs_and_triggers_with_next_fire() {
    let server = TestServer::with_workflow("nightly", SCHEDULED).await;
    let (status, w) = server.get("/v1/workflows/nightly").await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["description"], "Builds the nightly report");
    assert_eq!(
        w["inputs"],
        json!({
            "region": { "type": "string", "required": true, "description": "Where" },
            "limit": { "type": "integer", "required": false, "default": 3 },
            "dry": { "type": "boolean", "required": false },
        })
    );
    let keys: Vec<&String> = w["inputs"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["region", "limit", "dry"], "in definition order");
    assert_eq!(w["triggers"][0]["schedule"], "0 3 * * *");
    assert_eq!(w["triggers"][0]["timezone"], "Europe/Paris");
    let next = w["triggers"][0]["next_fire"].as_str().expect("a next fire time");
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
    assert!(next.to_rfc3339().contains("T03:00:00"), "{next}");
    assert!(next.timestamp_millis() > chrono::Utc::now().timestamp_millis());
    assert_eq!(w["triggers"][1], json!({ "on_event": "report.requested" }));

    // An older version's schedule is not live: no next fire.
    let (status, _) = server
        .apply("nightly", &SCHEDULED.replace("0 3 * * *", "0 4 * * *"))
        .await;
    assert_eq!(status, 201);
    let (_, old) = server.get("/v1/workflows/nightly?version=1").await;
    assert_eq!(
        old["triggers"][0],
        json!({ "schedule": "0 3 * * *", "timezone": "Europe/Paris" })
    );
    let (_, new) = server.get("/v1/workflows/nightly").await;
    assert!(
        new["triggers"][0]["next_fire"].as_str().unwrap().contains("T04:00:00"),
        "{new}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_served_without_data_and_the_api_still_wants_its_token() {
    let server = TestServer::start_with(|c| {
        c.tokens = vec![sandstep::server::auth::ApiToken::parse("ops:ui-token-0123456789").unwrap()];
    })
    .await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = plain.get(format!("{}/ui", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<script type=\"module\" src=\"/ui/app.js\"></script>"),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from another origin"
    );
    for file in [
        "app.js",
        "api.js",
        "dom.js",
        "runs.js",
        "run.js",
        "dag.js",
        "step.js",
        "workflows.js",
        "modules.js",
    ] {
        let answer = plain.get(format!("{}/ui/{file}", server.url)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{file}");
        assert_eq!(answer.headers()["content-type"], "text/javascript; charset=utf-8");
        let text = answer.text().await.unwrap();
        assert!(!text.contains("innerHTML"), "{file} puts text in as text");
    }
    let css = plain.get(format!("{}/ui/style.css", server.url)).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let (status, body) = answer(plain.get(format!("{}/ui/../Cargo.toml", server.url))).await;
    assert_eq!((status, problem(&body)), (404, "not-found"));
    let (status, body) = answer(plain.get(format!("{}/ui/secret.js", server.url))).await;
    assert_eq!((status, problem(&body)), (404, "not-found"));
    let root = plain.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(
        (root.status().as_u16(), &root.headers()["location"]),
        (307, &"/ui".parse().unwrap())
    );
    // The data stays behind the API's token.
    let (status, body) = answer(plain.get(format!("{}/v1/runs", server.url))).await;
    assert_eq!((status, problem(&body)), (401, "unauthorized"));
    server.stop().await;
}
