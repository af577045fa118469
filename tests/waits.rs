//! Wait steps and posted events, black-box on a real server: runs pause,
//! events resume them (the right ones), timeouts fail them, and an event
//! posted before its wait started is not lost.

use std::time::Duration;

use serde_json::{json, Value};

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
