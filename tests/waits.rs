//! Wait steps and posted events, black-box on a real server: runs pause,
//! events resume them (the right ones), timeouts fail them, and an event
//! posted before its wait started is not lost.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::process;
use crate::support::server::*;
use crate::support::*;

const APPROVAL: &str = r#"
name: approval
steps:
  - id: draft
    module: echo
    input: { text: "{{ inputs.text }}" }
  - id: approve
    needs: [draft]
    wait:
      event: "approval.{{ inputs.ticket }}"
      timeout: 1h
  - id: publish
    module: echo
    input: { approved_by: "{{ steps.approve.output.by }}", text: "{{ steps.draft.output.text }}" }
output: "{{ steps.publish.output }}"
"#;

/// Polls a run until its status is `status`.
pub async fn wait_status(server: &TestServer, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        if run["status"] == status {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "run {id} never {status}: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn start(server: &TestServer, workflow: &str, input: Value) -> String {
    let (status, run) = server
        .post_json(&format!("/v1/workflows/{workflow}/runs"), json!({ "input": input }))
        .await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

pub async fn send(server: &TestServer, topic: &str, data: Value, key: Option<&str>) -> (u16, Value) {
    let mut body = json!({ "topic": topic, "data": data });
    if let Some(key) = key {
        body["idempotency_key"] = json!(key);
    }
    server.post_json("/v1/events", body).await
}

/// The event types of a run, in order, from the store.
pub async fn event_types(server: &TestServer, id: &str) -> Vec<String> {
    query(
        &server.data_dir,
        &format!("SELECT type FROM events WHERE run_id = '{id}' ORDER BY seq"),
    )
    .await
    .into_iter()
    .map(|row| row[0].as_str().unwrap().to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_pauses_the_run_and_an_event_completes_it() {
    let server = TestServer::with_workflow("approval", APPROVAL).await;
    let id = start(&server, "approval", json!({ "text": "hello", "ticket": "T-1" })).await;
    let paused = wait_status(&server, &id, "paused").await;
    let approve = &paused["steps"][1];
    assert_eq!(approve["status"], "waiting", "{paused}");
    assert_eq!(approve["waiting_for"], "approval.T-1");
    assert!(approve["waiting_until_ms"].as_u64().unwrap() > paused["created_ms"].as_u64().unwrap());
    assert_eq!(paused["steps"][2]["status"], "pending");
    let (_, listed) = server.get("/v1/runs?status=paused").await;
    assert_eq!(listed["runs"][0]["id"], id.as_str(), "{listed}");

    let (status, posted) = send(&server, "approval.T-1", json!({ "by": "ana" }), None).await;
    assert_eq!(status, 202, "{posted}");
    assert_eq!(posted["created"], true);
    let event_id = posted["id"].as_str().unwrap();
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!({ "approved_by": "ana", "text": "hello" }));
    assert_eq!(run["steps"][1]["output"], json!({ "by": "ana" }));
    assert_eq!(run["steps"][1]["event"], event_id);
    let types = event_types(&server, &id).await;
    let paused_at = types.iter().position(|t| t == "run.paused").expect("run.paused");
    let resumed_at = types.iter().position(|t| t == "run.resumed").expect("run.resumed");
    assert!(paused_at < resumed_at, "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "run.paused").count(), 1, "{types:?}");

    let (status, events) = server.get("/v1/events?topic=approval.T-1").await;
    assert_eq!(status, 200);
    assert_eq!(events["events"][0]["id"], event_id);
    assert_eq!(events["events"][0]["resumed"], json!([id]));
    assert_eq!(events["events"][0]["started"], json!([]));
    assert_eq!(events["events"][0]["data"], json!({ "by": "ana" }));
    server.stop().await;
}

const ORDER: &str = r#"
name: order
steps:
  - id: paid
    wait:
      event: payment
      match: "event.data.order == inputs.order and event.data.amount >= 10"
      timeout: 1h
output: "{{ steps.paid.output }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_picks_the_right_event_among_several() {
    let server = TestServer::with_workflow("order", ORDER).await;
    let first = start(&server, "order", json!({ "order": "A" })).await;
    let second = start(&server, "order", json!({ "order": "B" })).await;
    wait_status(&server, &first, "paused").await;
    wait_status(&server, &second, "paused").await;
    // Wrong order, too small an amount, a field missing: none resumes A.
    for data in [
        json!({ "order": "C", "amount": 50 }),
        json!({ "order": "A", "amount": 5 }),
        json!({ "amount": 50 }),
    ] {
        let (status, _) = send(&server, "payment", data, None).await;
        assert_eq!(status, 202);
    }
    let (status, posted) = send(&server, "payment", json!({ "order": "B", "amount": 12 }), None).await;
    assert_eq!(status, 202);
    let run = server.wait_run(&second).await;
    assert_eq!(run["output"], json!({ "order": "B", "amount": 12 }), "{run}");
    assert_eq!(run["steps"][0]["event"], posted["id"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, still) = server.get(&format!("/v1/runs/{first}")).await;
    assert_eq!(still["status"], "paused", "{still}");
    send(&server, "payment", json!({ "order": "A", "amount": 10 }), None).await;
    let run = server.wait_run(&first).await;
    assert_eq!(run["output"], json!({ "order": "A", "amount": 10 }), "{run}");
    // Each event names the runs it resumed, newest first.
    let (_, events) = server.get("/v1/events?topic=payment").await;
    let resumed: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resumed"])
        .collect();
    assert_eq!(
        resumed,
        [&json!([first]), &json!([second]), &json!([]), &json!([]), &json!([])]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_before_the_wait_started_is_not_lost() {
    let workflow = r#"
name: late
steps:
  - id: slow
    sleep: 300ms
  - id: hear
    needs: [slow]
    wait: { event: "late.{{ run.id }}" }
output: "{{ steps.hear.output }}"
"#;
    let server = TestServer::with_workflow("late", workflow).await;
    // An event of the topic from before the run was queued is not its own.
    let (status, _) = send(&server, "late.early", json!({ "n": 0 }), None).await;
    assert_eq!(status, 202);
    let id = start(&server, "late", json!({})).await;
    let (status, _) = send(&server, &format!("late.{id}"), json!({ "n": 1 }), None).await;
    assert_eq!(status, 202);
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!({ "n": 1 }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_fails_with_wait_timeout_and_on_failure_applies() {
    let workflow = r#"
name: patient
steps:
  - id: hear
    wait: { event: never.comes, timeout: 300ms }
    on_failure: continue
  - id: after
    needs: [hear]
    module: echo
  - id: other
    module: echo
    input: { ok: true }
"#;
    let server = TestServer::with_workflow("patient", workflow).await;
    let id = start(&server, "patient", json!({})).await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let hear = &run["steps"][0];
    assert_eq!(hear["status"], "failed");
    assert_eq!(hear["error"]["kind"], "wait_timeout");
    assert_eq!(hear["error"]["message"], "no event \"never.comes\" came within 300ms");
    assert_eq!(hear["error"]["retryable"], false);
    assert_eq!(run["steps"][1]["status"], "skipped");
    assert_eq!(run["steps"][2]["output"], json!({ "ok": true }));
    // The wait is gone: a late event resumes nothing.
    let (_, posted) = send(&server, "never.comes", json!({}), None).await;
    let (_, events) = server.get("/v1/events?topic=never.comes").await;
    assert_eq!(events["events"][0]["id"], posted["id"]);
    assert_eq!(events["events"][0]["resumed"], json!([]));
    // Without on_failure: continue, the run fails.
    let workflow = workflow
        .replace("    on_failure: continue\n", "")
        .replace("name: patient", "name: strict");
    let (status, body) = server.apply("strict", &workflow).await;
    assert_eq!(status, 201, "{body}");
    let id = start(&server, "strict", json!({})).await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        run["error"],
        "step hear failed: wait_timeout: no event \"never.comes\" came within 300ms"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_key_stores_the_event_once() {
    let server = TestServer::with_workflow("approval", APPROVAL).await;
    let id = start(&server, "approval", json!({ "text": "x", "ticket": "K" })).await;
    let (status, first) = send(&server, "approval.K", json!({ "by": "first" }), Some("key-1")).await;
    assert_eq!((status, first["created"].clone()), (202, json!(true)));
    let (status, again) = send(&server, "approval.K", json!({ "by": "second" }), Some("key-1")).await;
    assert_eq!((status, again["created"].clone()), (202, json!(false)));
    assert_eq!(again["id"], first["id"]);
    let run = server.wait_run(&id).await;
    assert_eq!(run["output"]["approved_by"], "first", "{run}");
    let (_, events) = server.get("/v1/events?topic=approval.K").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_is_paused_and_wakes_on_time() {
    let workflow = r#"
name: nap
steps:
  - id: nap
    sleep: 700ms
  - id: after
    needs: [nap]
    module: echo
    input: { woke: true }
output: "{{ steps.after.output }}"
"#;
    let server = TestServer::with_workflow("nap", workflow).await;
    let started = std::time::Instant::now();
    let id = start(&server, "nap", json!({})).await;
    wait_status(&server, &id, "paused").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["output"], json!({ "woke": true }), "{run}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700), "woke after {took:?}");
    assert_eq!(
        event_types(&server, &id).await,
        [
            "run.queued",
            "run.started",
            "step.waiting",
            "run.paused",
            "run.resumed",
            "step.succeeded",
            "step.started",
            "step.succeeded",
            "run.completed"
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_paused_run_cancels_its_wait() {
    let server = TestServer::with_workflow("approval", APPROVAL).await;
    let id = start(&server, "approval", json!({ "text": "x", "ticket": "C" })).await;
    wait_status(&server, &id, "paused").await;
    let (status, run) = server.post_json(&format!("/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 202, "{run}");
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "canceled", "{run}");
    assert_eq!(run["steps"][1]["status"], "canceled");
    assert_eq!(run["steps"][2]["status"], "canceled");
    let waits = query(&server.data_dir, "SELECT COUNT(*) FROM waits").await;
    assert_eq!(waits[0][0], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_and_wait_definitions_are_refused_with_their_location() {
    let server = TestServer::start().await;
    for (body, field) in [
        (json!({ "topic": "", "data": {} }), "topic"),
        (json!({ "topic": "has space" }), "topic"),
        (json!({ "topic": "x".repeat(257) }), "topic"),
        (json!({ "topic": "ok", "idempotency_key": "" }), "idempotency_key"),
    ] {
        let (status, problem) = server.post_json("/v1/events", body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, problem) = server.post_json("/v1/events", json!({ "data": {} })).await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("topic"), "{problem}");
    let (status, problem) = server.get("/v1/events?cursor=abc").await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(crate::support::server::problem(&problem), "bad-request");

    for (definition, location, message) in [
        (
            "wait: { event: a, timeout: 0s }",
            "steps.w.wait.timeout",
            "must be longer than zero",
        ),
        (
            "wait: { event: \"a b\" }",
            "steps.w.wait.event",
            "an event topic cannot contain ' '",
        ),
        ("wait: { event: a, match: \"event.data ==\" }", "steps.w.wait.match", ""),
        (
            "wait: { event: a, match: \"event.other\" }",
            "steps.w.wait.match",
            "event has only `id`, `topic` and `data`",
        ),
        ("wait: { event: a }\n    module: echo", "steps.w", "not several"),
        (
            "wait: { event: a }\n    for_each: [1, 2]",
            "steps.w.for_each",
            "cannot be combined with `wait`",
        ),
        ("wait: { event: a }\n    timeout: 5s", "steps.w.timeout", "wait.timeout"),
        (
            "wait: { event: a, after: 5s }",
            "steps.w.wait.after",
            "unknown field `after`",
        ),
        (
            "module: echo\n    input: { x: \"{{ event.data }}\" }",
            "steps.w.input",
            "exists only in the `match` of a wait",
        ),
    ] {
        let yaml = format!("name: bad\nsteps:\n  - id: w\n    {definition}\n");
        let (status, body) = server.apply("bad", &yaml).await;
        assert_eq!(status, 422, "{definition}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["location"] == location && e["message"].as_str().unwrap().contains(message)),
            "{definition}: {body}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_event_send_completes_an_approval_and_schedules_list_shows_triggers() {
    let server = TestServer::with_workflow("approval", APPROVAL).await;
    let scheduled = "name: nightly\ntriggers:\n  - schedule: \"0 3 * * *\"\n    timezone: Asia/Tokyo\nsteps:\n  - id: s\n    module: echo\n";
    assert_eq!(server.apply("nightly", scheduled).await.0, 201);
    let id = start(&server, "approval", json!({ "text": "cli", "ticket": "CLI-9" })).await;
    wait_status(&server, &id, "paused").await;
    let url = server.url.clone();
    let cli = move |args: &[&str]| {
        let out = process::command()
            .args(args)
            .env("SANDSTEP_URL", &url)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let cli = cli.clone();
        move || {
            cli(&[
                "event",
                "send",
                "approval.CLI-9",
                "--data",
                r#"{"by": "cli"}"#,
                "--key",
                "k1",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let sent: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(sent["created"], true);
    let run = server.wait_run(&id).await;
    assert_eq!(run["output"], json!({ "approved_by": "cli", "text": "cli" }), "{run}");

    let (code, _, stderr) = tokio::task::spawn_blocking({
        let cli = cli.clone();
        move || cli(&["event", "send", "approval.CLI-9", "--data", "{not json"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--data is not valid JSON"), "{stderr}");

    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || cli(&["schedules", "list"]))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    let schedule = &listed["schedules"][0];
    assert_eq!(schedule["workflow"], "nightly");
    assert_eq!(schedule["timezone"], "Asia/Tokyo");
    assert!(
        schedule["next_fire"].as_str().unwrap().ends_with("T03:00:00+09:00"),
        "{schedule}"
    );
    assert_eq!(schedule["last_run"], Value::Null);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_past_its_deadline_fails_on_time() {
    let workflow = "name: bounded\ntimeout: 700ms\nsteps:\n  - id: w\n    wait: { event: never.comes }\n";
    let server = TestServer::with_workflow("bounded", workflow).await;
    let started = std::time::Instant::now();
    let id = start(&server, "bounded", json!({})).await;
    wait_status(&server, &id, "paused").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"], "the run timed out after 700ms");
    assert_eq!(run["steps"][0]["status"], "canceled");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The run was started again once, at its deadline, not over and over.
    assert_eq!(
        event_types(&server, &id)
            .await
            .iter()
            .filter(|t| *t == "run.paused")
            .count(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_example_waits_for_its_approver() {
    let server = TestServer::start().await;
    for name in ["wordcount", "hello"] {
        let (status, body) = server.push(name, &guests().example(name)).await;
        assert_eq!(status, 201, "{body}");
    }
    let yaml = std::fs::read_to_string(root().join("examples/approval.yaml")).unwrap();
    assert_eq!(server.apply("approval", &yaml).await.0, 201);
    let id = start(&server, "approval", json!({ "ticket": "T-7", "text": "a b a" })).await;
    wait_status(&server, &id, "paused").await;
    // A refusal does not match; the approval does.
    send(&server, "approval.T-7", json!({ "approved": false, "by": "bo" }), None).await;
    send(&server, "approval.T-7", json!({ "approved": true, "by": "Ana" }), None).await;
    let run = server.wait_run(&id).await;
    assert_eq!(
        run["output"],
        json!({ "words": 3, "approved_by": "Ana", "greeting": "Hello, Ana!" }),
        "{run}"
    );
    server.stop().await;
}

/// A paused run watched on the node that holds it is not read from the
/// store every second while it waits: this node appends its next events
/// and hands them to the stream when the event resumes it. On SQLite (one
/// node) it is not followed at all; on PostgreSQL it is, slowly, in case
/// another node takes it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_paused_run_is_streamed_on_resume_without_being_followed() {
    use futures_util::StreamExt;
    let server = TestServer::with_workflow("approval", APPROVAL).await;
    let id = start(&server, "approval", json!({ "text": "hi", "ticket": "T-9" })).await;
    wait_status(&server, &id, "paused").await;
    let mut stream = server
        .request(reqwest::Method::GET, &format!("/v1/runs/{id}/events"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let first = stream.next().await.expect("the stored events").unwrap();
    let mut text = String::from_utf8_lossy(&first).to_string();
    let metric = crate::run_service::metric;
    assert_eq!(metric(&server, "sandstep_watched_runs").await, 1.0);
    let followed = if crate::support::store::postgres().is_some() {
        1.0
    } else {
        0.0
    };
    assert_eq!(metric(&server, "sandstep_followed_runs").await, followed);

    let (status, _) = send(&server, "approval.T-9", json!({ "by": "ana" }), None).await;
    assert_eq!(status, 202);
    let read = async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the stream ends with the run");
    for kind in ["run.paused", "run.resumed", "step.succeeded", "run.completed"] {
        assert!(text.contains(&format!("event: {kind}")), "{kind} missing from {text}");
    }
    assert_eq!(metric(&server, "sandstep_watched_runs").await, 0.0);
    server.stop().await;
}
