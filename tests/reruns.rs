//! Re-running a run from a step, black-box on a real server and through the
//! CLI: the steps before it keep their recorded outputs and their guests
//! are not called again; the chosen steps and their dependents run again.

use serde_json::{json, Value};

use crate::support::server::*;
use crate::support::*;

const PIPELINE: &str = r#"
name: pipeline
inputs:
  mode: { type: string, default: ok }
steps:
  - id: fetch
    module: hostile
    input: { mode: context }
  - id: enrich
    needs: [fetch]
    module: hostile
    input: { mode: context }
  - id: check
    needs: [enrich]
    module: hostile
    input: { mode: "{{ inputs.mode }}", message: "bad data" }
  - id: store
    needs: [check]
    module: hostile
    input: { mode: context }
output: { fetch: "{{ steps.fetch.output.run_id }}", store: "{{ steps.store.output.run_id }}" }
"#;

async fn started_steps(server: &TestServer, run: &str) -> Vec<String> {
    query(
        &server.data_dir,
        &format!("SELECT body FROM events WHERE run_id = '{run}' AND type = 'step.started' ORDER BY seq"),
    )
    .await
    .into_iter()
    .map(|row| {
        let body: Value = serde_json::from_str(row[0].as_str().unwrap()).unwrap();
        body["step"].as_str().unwrap().to_string()
    })
    .collect()
}

async fn rerun(server: &TestServer, run: &str, body: Value) -> (u16, Value) {
    server.post_json(&format!("/v1/runs/{run}/rerun?wait=20s"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_from_the_failed_step_reuses_the_outputs_before_it() {
    let server = TestServer::with_workflow("pipeline", PIPELINE).await;
    let (status, first) = server
        .post_json(
            "/v1/workflows/pipeline/runs?wait=20s",
            json!({ "input": { "mode": "error" } }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(first["status"], "failed", "{first}");
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(first["steps"][2]["status"], "failed");

    // From every failed step, with the input fixed: check and store run again.
    let (status, second) = rerun(
        &server,
        first_id,
        json!({ "failed": true, "input": { "mode": "context" } }),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["status"], "completed", "{second}");
    let second_id = second["id"].as_str().unwrap();
    assert_ne!(second_id, first_id);
    assert_eq!(second["rerun_of"], first_id);
    assert_eq!(second["version"], first["version"]);
    assert_eq!(second["input"], json!({ "mode": "context" }));
    // fetch and enrich kept the first run's outputs (its run id inside).
    assert_eq!(second["output"], json!({ "fetch": first_id, "store": second_id }));
    for step in [0, 1] {
        assert_eq!(second["steps"][step]["reused"], true, "{second}");
        assert_eq!(second["steps"][step]["attempts"], json!([]));
        assert_eq!(second["steps"][step]["output"], first["steps"][step]["output"]);
    }
    assert_eq!(started_steps(&server, second_id).await, ["check", "store"]);

    // From a step in the middle: the one before it is reused.
    let (status, third) = rerun(&server, second_id, json!({ "from": "enrich" })).await;
    assert_eq!(status, 201, "{third}");
    assert_eq!(third["status"], "completed", "{third}");
    let third_id = third["id"].as_str().unwrap();
    assert_eq!(third["rerun_of"], second_id);
    assert_eq!(third["input"], json!({ "mode": "context" }), "the input stays");
    assert_eq!(third["output"], json!({ "fetch": first_id, "store": third_id }));
    assert_eq!(started_steps(&server, third_id).await, ["enrich", "check", "store"]);
    assert_eq!(third["steps"][0]["reused"], true);
    assert!(third["steps"][1].get("reused").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reruns_are_refused_naming_what_is_wrong() {
    let server = TestServer::with_workflow("pipeline", PIPELINE).await;
    let (_, done) = server
        .post_json(
            "/v1/workflows/pipeline/runs?wait=20s",
            json!({ "input": { "mode": "context" } }),
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let id = done["id"].as_str().unwrap();
    let (status, body) = rerun(&server, "no-such-run", json!({ "from": "fetch" })).await;
    assert_eq!((status, problem(&body)), (404, "not-found"), "{body}");
    for (request, field, message) in [
        (
            json!({ "from": "nope" }),
            "from",
            "workflow pipeline has no step \"nope\" (steps: fetch, enrich, check, store)",
        ),
        (json!({ "failed": true }), "failed", "has no failed step (completed)"),
        (json!({}), "from", "give `from` (a step id) or `failed: true`"),
        (json!({ "from": "fetch", "failed": true }), "from", "not both"),
        (json!({ "from": "fetch", "input": { "mode": 3 } }), "input", "mode"),
    ] {
        let (status, body) = rerun(&server, id, request.clone()).await;
        assert_eq!(status, 422, "{request}: {body}");
        assert!(body["field"] == field, "{request}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(message), "{request}: {body}");
    }
    let (status, body) = rerun(&server, id, json!({ "from": "fetch", "extra": 1 })).await;
    assert_eq!(status, 422, "{body}");

    // A run that has not ended cannot be re-run.
    let waiting = "name: waiting\nsteps:\n  - id: w\n    wait: { event: never }\n";
    assert_eq!(server.apply("waiting", waiting).await.0, 201);
    let (_, run) = server.post_json("/v1/workflows/waiting/runs", json!({})).await;
    let (status, body) = rerun(&server, run["id"].as_str().unwrap(), json!({ "from": "w" })).await;
    assert_eq!((status, problem(&body)), (409, "conflict"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("has not ended"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_rerun_from_a_step() {
    let server = TestServer::with_workflow("pipeline", PIPELINE).await;
    let (_, done) = server
        .post_json(
            "/v1/workflows/pipeline/runs?wait=20s",
            json!({ "input": { "mode": "context" } }),
        )
        .await;
    let id = done["id"].as_str().unwrap().to_string();
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        process::command()
            .args(["runs", "rerun", &id, "--from", "store", "--wait", "20s"])
            .env("SANDSTEP_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["rerun_of"], done["id"]);
    assert_eq!(started_steps(&server, run["id"].as_str().unwrap()).await, ["store"]);
    // Neither --from nor --failed: a usage error.
    let url = server.url.clone();
    let id = done["id"].as_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        process::command()
            .args(["runs", "rerun", &id])
            .env("SANDSTEP_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--from"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}
