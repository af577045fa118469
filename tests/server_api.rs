//! The HTTP API, black-box: the real server on 127.0.0.1:0 and a real client.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::server::*;
use crate::support::*;

const CHAIN: &str = r#"
name: greet
inputs:
  who: { type: string, required: true }
steps:
  - id: hello
    module: hello
    input: { name: "{{ inputs.who }}" }
  - id: echo
    module: echo
    input: { said: "{{ steps.hello.output.greeting }}" }
output: "{{ steps.echo.output.said }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_upload_list_get_delete() {
    let server = TestServer::start().await;
    let hello = guests().example("hello");
    let (status, body) = server.push("hello", &hello).await;
    assert_eq!(status, 201);
    assert_eq!(body["kind"], "step");
    assert_eq!(body["exports"], json!(["run"]));
    assert_eq!(
        body["digest"],
        sandstep::sandbox::digest(&std::fs::read(&hello).unwrap())
    );
    assert_eq!(body["size"], std::fs::metadata(&hello).unwrap().len());

    let (status, list) = server.get("/v1/modules").await;
    assert_eq!((status, list["modules"][0]["name"].clone()), (200, json!("hello")));
    let (status, one) = server.get("/v1/modules/hello").await;
    assert_eq!((status, one["tags"][0]["tag"].clone()), (200, json!("latest")));

    let (status, missing) = server.get("/v1/modules/nope").await;
    assert_eq!((status, problem(&missing)), (404, "not-found"));

    let (status, _) = answer(server.request(reqwest::Method::DELETE, "/v1/modules/hello")).await;
    assert_eq!(status, 204);
    let (status, _) = answer(server.request(reqwest::Method::DELETE, "/v1/modules/hello")).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_upload_errors() {
    let server = TestServer::start_with(|c| c.max_module_bytes = 100_000).await;
    let wasm = std::fs::read(guests().example("hello")).unwrap();
    let upload = |query: Vec<(&'static str, &'static str)>, content_type: &'static str, body: Vec<u8>| {
        server
            .request(reqwest::Method::POST, "/v1/modules")
            .query(&query)
            .header("content-type", content_type)
            .body(body)
    };
    let (status, body) = answer(upload(vec![("name", "x")], "text/plain", wasm.clone())).await;
    assert_eq!((status, problem(&body)), (415, "unsupported-media-type"));
    let (status, body) = answer(upload(vec![], "application/wasm", wasm.clone())).await;
    assert_eq!(
        (status, problem(&body), body["field"].clone()),
        (400, "bad-request", json!("name"))
    );
    let (status, body) = answer(upload(vec![("name", "Bad Name")], "application/wasm", wasm.clone())).await;
    assert_eq!(
        (status, problem(&body), body["field"].clone()),
        (422, "invalid-name", json!("name"))
    );
    let (status, body) = answer(upload(vec![("name", "junk")], "application/wasm", b"not wasm".to_vec())).await;
    assert_eq!((status, problem(&body)), (422, "invalid-module"));
    assert_eq!(
        body["detail"],
        "not a WebAssembly binary: it does not start with the `\\0asm` magic number"
    );
    let (status, body) = answer(upload(vec![("name", "big")], "application/wasm", vec![0u8; 200_000])).await;
    assert_eq!((status, problem(&body)), (413, "payload-too-large"));
    let (_, list) = server.get("/v1/modules").await;
    assert_eq!(list["modules"], json!([]), "nothing refused was stored");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_versioned_and_validated() {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    let (status, body) = server.apply("greet", CHAIN).await;
    assert_eq!(
        (status, body["version"].clone(), body["created"].clone()),
        (201, json!(1), json!(true))
    );
    let (status, body) = server.apply("greet", CHAIN).await;
    assert_eq!(
        (status, body["version"].clone(), body["created"].clone()),
        (200, json!(1), json!(false))
    );
    let (status, body) = server.apply("greet", &CHAIN.replace("said", "told")).await;
    assert_eq!((status, body["version"].clone()), (201, json!(2)));
    let (_, one) = server.get("/v1/workflows/greet").await;
    assert_eq!(
        (one["version"].clone(), one["versions"].clone()),
        (json!(2), json!([1, 2]))
    );
    let (_, first) = server.get("/v1/workflows/greet?version=1").await;
    assert_eq!(first["source"], CHAIN);
    let (_, list) = server.get("/v1/workflows").await;
    assert_eq!(list["workflows"][0]["name"], "greet");

    let (status, body) = server
        .apply(
            "bad",
            "name: bad\nsteps:\n  - { id: a, module: nowhere }\n  - { id: b, module: echo, needs: [zz] }\n",
        )
        .await;
    assert_eq!((status, problem(&body)), (422, "invalid-workflow"));
    assert_eq!(
        body["errors"],
        json!([
            { "location": "steps.a.module", "message": "no module nowhere on this server (push it first)" },
            { "location": "steps.b.needs", "message": "unknown step \"zz\"" }
        ])
    );
    let (status, body) = server.apply("other", CHAIN).await;
    assert_eq!((status, body["field"].clone()), (422, json!("name")));
    // Refused definitions store nothing: no new workflow, no new version.
    let (status, _) = server.get("/v1/workflows/bad").await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/v1/workflows/other").await;
    assert_eq!(status, 404);
    let (status, body) = server.apply("greet", "name: greet\nsteps: []\n").await;
    assert_eq!(status, 422, "{body}");
    let (_, one) = server.get("/v1/workflows/greet").await;
    assert_eq!(one["versions"], json!([1, 2]));
    let (status, body) = answer(
        server
            .request(reqwest::Method::PUT, "/v1/workflows/greet")
            .header("content-type", "image/png")
            .body(CHAIN),
    )
    .await;
    assert_eq!((status, problem(&body)), (415, "unsupported-media-type"));
    let (status, body) = server.get("/v1/workflows/nope").await;
    assert_eq!((status, problem(&body)), (404, "not-found"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_start_wait_get_and_idempotency() {
    let server = TestServer::with_workflow("greet", CHAIN).await;
    let (status, run) = server
        .post_json(
            "/v1/workflows/greet/runs?wait=10s",
            json!({ "input": { "who": "Ada" }, "idempotency_key": "k1" }),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        (run["status"].clone(), run["output"].clone()),
        (json!("completed"), json!("Hello, Ada!"))
    );
    assert_eq!(run["version"], 1);
    let hello = &run["steps"][0];
    assert_eq!(
        (hello["id"].clone(), hello["status"].clone()),
        (json!("hello"), json!("succeeded"))
    );
    let attempt = &hello["attempts"][0];
    assert_eq!(attempt["attempt"], 1);
    assert_eq!(attempt["status"], "succeeded");
    assert_eq!(
        attempt["idempotency_key"],
        format!("{}/hello", run["id"].as_str().unwrap())
    );
    for field in ["duration_us", "fuel_consumed", "peak_memory"] {
        assert!(attempt[field].as_u64().unwrap() > 0, "{field}: {attempt}");
    }
    assert_eq!(
        attempt["logs"],
        json!([{ "level": "info", "message": "greeting Ada (attempt 1)" }])
    );

    let (status, again) = server
        .post_json(
            "/v1/workflows/greet/runs",
            json!({ "input": { "who": "Bo" }, "idempotency_key": "k1" }),
        )
        .await;
    assert_eq!(
        (status, again["id"].clone(), again["status"].clone()),
        (200, run["id"].clone(), json!("completed")),
        "the same key answers the same run, as it stands"
    );
    // Without `?wait`, a new run is answered as stored: queued, its steps
    // pending; it then runs to its end.
    let (status, queued) = server
        .post_json("/v1/workflows/greet/runs", json!({ "input": { "who": "Cy" } }))
        .await;
    assert_eq!(status, 201, "{queued}");
    assert_eq!(
        (
            queued["status"].clone(),
            queued["input"].clone(),
            queued["steps"][0]["id"].clone(),
            queued["steps"][0]["status"].clone()
        ),
        (
            json!("queued"),
            json!({ "who": "Cy" }),
            json!("hello"),
            json!("pending")
        ),
        "{queued}"
    );
    let ended = server.wait_run(queued["id"].as_str().unwrap()).await;
    assert_eq!(
        (ended["status"].clone(), ended["output"].clone()),
        (json!("completed"), json!("Hello, Cy!"))
    );

    let (status, body) = server
        .post_json("/v1/workflows/greet/runs", json!({ "input": { "who": 1 } }))
        .await;
    assert_eq!(
        (status, problem(&body), body["field"].clone()),
        (422, "invalid-input", json!("input"))
    );
    assert_eq!(body["detail"], "input who must be a string, got a number");
    let (status, body) = server.post_json("/v1/workflows/nope/runs", json!({})).await;
    assert_eq!((status, problem(&body)), (404, "not-found"));
    let (status, body) = server
        .post_json("/v1/workflows/greet/runs", json!({ "inptu": {} }))
        .await;
    assert_eq!((status, problem(&body)), (422, "invalid-body"));
    let (status, body) = answer(
        server
            .request(reqwest::Method::POST, "/v1/workflows/greet/runs")
            .header("content-type", "application/json")
            .body("{oops"),
    )
    .await;
    assert_eq!((status, problem(&body)), (400, "bad-request"));
    let (status, body) = answer(
        server
            .request(reqwest::Method::POST, "/v1/workflows/greet/runs")
            .body("{}"),
    )
    .await;
    assert_eq!((status, problem(&body)), (415, "unsupported-media-type"));
    let (status, body) = server.get("/v1/runs/nope").await;
    assert_eq!((status, problem(&body)), (404, "not-found"));
    // JSON bodies have their own limit (1 MiB by default). The body is only
    // just over it: the server stops reading at the limit and answers, and a
    // much larger body would still be in the client's send buffer when the
    // connection closes (a broken pipe instead of the 413).
    let huge = json!({ "input": { "who": "x".repeat(1 << 20) } });
    let (status, body) = server.post_json("/v1/workflows/greet/runs", huge).await;
    assert_eq!((status, problem(&body)), (413, "payload-too-large"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_filters_and_pages() {
    let server = TestServer::with_workflow("greet", CHAIN).await;
    let mut ids = Vec::new();
    for who in ["a", "b", "c"] {
        let (_, run) = server
            .post_json("/v1/workflows/greet/runs?wait=10s", json!({ "input": { "who": who } }))
            .await;
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    let (_, failed) = server
        .post_json("/v1/workflows/greet/runs", json!({ "input": {} }))
        .await;
    assert_eq!(problem(&failed), "invalid-input");
    let (_, page1) = server.get("/v1/runs?workflow=greet&status=completed&limit=2").await;
    let first: Vec<&str> = page1["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = server
        .get(&format!("/v1/runs?workflow=greet&limit=2&cursor={cursor}"))
        .await;
    let second: Vec<&str> = page2["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(second, [ids[0].as_str()]);
    assert_eq!(page2["next_cursor"], Value::Null);
    let (status, body) = server.get("/v1/runs?status=happy").await;
    assert_eq!((status, body["field"].clone()), (400, json!("status")));
    let (status, body) = server.get("/v1/runs?limit=0").await;
    assert_eq!((status, body["field"].clone()), (400, json!("limit")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_running_run() {
    let server = TestServer::with_workflow(
        "slow",
        "name: slow\nsteps:\n  - { id: nap, module: hostile, input: { mode: sleep, ms: 10000 } }\n",
    )
    .await;
    let id = server.start_run("slow").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, canceled) = server.post_json(&format!("/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 202, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["steps"][0]["status"], "canceled");
    let (status, body) = server.post_json(&format!("/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!((status, problem(&body)), (409, "conflict"));
    server.stop().await;
}

async fn sse(server: &TestServer, id: &str, last_event_id: Option<&str>) -> Vec<(String, String, Value)> {
    use eventsource_stream::Eventsource;
    let mut request = server.request(reqwest::Method::GET, &format!("/v1/runs/{id}/events"));
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("events keep coming")
    {
        let event = event.unwrap();
        events.push((
            event.id.clone(),
            event.event.clone(),
            serde_json::from_str(&event.data).unwrap(),
        ));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_and_resume() {
    let server = TestServer::with_workflow("napper", "name: napper\nsteps:\n  - { id: nap, module: hostile, input: { mode: sleep, ms: 300 } }\n  - { id: after, module: echo, needs: [nap] }\n").await;
    let id = server.start_run("napper").await;
    let live = sse(&server, &id, None).await;
    let types: Vec<&str> = live.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "run.queued",
            "run.started",
            "step.started",
            "step.succeeded",
            "step.started",
            "step.succeeded",
            "run.completed"
        ]
    );
    let ids: Vec<String> = live.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7"]);
    assert_eq!(live[3].2["step"], "nap");

    let resumed = sse(&server, &id, Some("4")).await;
    let resumed_ids: Vec<&str> = resumed.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(resumed_ids, ["5", "6", "7"]);
    assert!(
        sse(&server, &id, Some("7")).await.is_empty(),
        "nothing after the final event"
    );

    let (status, body) = answer(
        server
            .request(reqwest::Method::GET, &format!("/v1/runs/{id}/events"))
            .header("Last-Event-ID", "x"),
    )
    .await;
    assert_eq!((status, body["field"].clone()), (400, json!("Last-Event-ID")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_every_v1_route() {
    let token = "test-token-0123456789".to_string();
    let server = TestServer::start_with(|c| c.tokens = vec![sandstep::server::auth::ApiToken::new(&token)]).await;
    let bare = reqwest::Client::new();
    for path in ["/v1/runs", "/v1/modules", "/v1/workflows", "/v1/openapi.json"] {
        let (status, body) = answer(bare.get(format!("{}{path}", server.url))).await;
        assert_eq!((status, problem(&body)), (401, "unauthorized"), "{path}");
        let (status, _) = answer(
            bare.get(format!("{}{path}", server.url))
                .bearer_auth("wrong-token-0123456789"),
        )
        .await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = answer(bare.post(format!("{}/v1/modules?name=x", server.url)).body("x")).await;
    assert_eq!(status, 401);
    let (status, _) = server.get("/v1/runs").await;
    assert_eq!(status, 200, "with the token");
    let health = bare.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;

    assert!(
        sandstep::server::check_bind::<()>(&"0.0.0.0:8080".parse().unwrap(), &[])
            .unwrap_err()
            .starts_with("refusing to listen on 0.0.0.0:8080 without API tokens")
    );
    assert!(sandstep::server::check_bind(&"0.0.0.0:8080".parse().unwrap(), &[token]).is_ok());
    assert!(sandstep::server::check_bind::<()>(&"127.0.0.1:8080".parse().unwrap(), &[]).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi() {
    let server = TestServer::with_workflow("greet", CHAIN).await;
    server
        .post_json("/v1/workflows/greet/runs?wait=10s", json!({ "input": { "who": "m" } }))
        .await;
    let text = server.metrics().await;
    for line in [
        "sandstep_runs{status=\"completed\"} 1",
        "sandstep_attempts_total{outcome=\"succeeded\"} 2",
        "sandstep_step_duration_seconds_count 2",
        "sandstep_instantiate_seconds_count 2",
        "sandstep_queue_depth 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let (status, doc) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/modules",
        "/v1/workflows/{name}",
        "/v1/workflows/{name}/runs",
        "/v1/workflows/{name}/runs/batch",
        "/v1/runs/{id}/events",
        "/v1/runs/{id}/cancel",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    // A run's output is null until it completes and may then be any JSON
    // value; its error is null unless it failed: the schema must say so.
    let row = &doc["components"]["schemas"]["RunRow"]["properties"];
    assert_eq!(row["output"].get("type"), None, "RunRow.output: {}", row["output"]);
    assert!(
        row["error"]["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("null"))),
        "RunRow.error: {}",
        row["error"]
    );
    let (status, body) = server.get("/v1/nothing-here").await;
    assert_eq!((status, problem(&body)), (404, "not-found"));
    server.stop().await;
}

/// A run that cannot be resumed (its pinned module is gone) is failed with
/// the reason; it does not keep the server from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresumable_run_fails_instead_of_blocking_start() {
    let dir = tempfile::tempdir().unwrap();
    let quick_grace = |c: &mut sandstep::server::ServerConfig| c.grace = Duration::from_millis(50);
    let server = TestServer::start_in(dir.path(), quick_grace).await;
    server.push_test_modules().await;
    server
        .apply(
            "slow",
            "name: slow\nsteps:\n  - { id: nap, module: hostile, input: { mode: sleep, ms: 10000 } }\n",
        )
        .await;
    let id = server.start_run("slow").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await; // the attempt outlives the grace period: the run stays unfinished

    sql(dir.path(), &["DELETE FROM module_tags", "DELETE FROM modules"]).await;

    let server = TestServer::start_in(dir.path(), quick_grace).await;
    let (status, run) = server.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot resume: module sha256:"),
        "{run}"
    );
    server.stop().await;
}

/// `sandstep module add` and the server share the data directory's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locally_added_modules_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests().example("hello");
    let out = crate::support::store::on(&mut crate::support::process::command(), dir.path())
        .args([
            "module",
            "add",
            hello.to_str().unwrap(),
            "--name",
            "hello",
            "--tag",
            "v1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let (_, one) = server.get("/v1/modules/hello").await;
    assert_eq!(one["tags"][0]["tag"], "v1");
    let (status, _) = server.apply("hi", "name: hi\nsteps:\n  - { id: a, module: \"hello:v1\", input: { name: Lo } }\noutput: \"{{ steps.a.output.greeting }}\"\n").await;
    assert_eq!(status, 201);
    let (_, run) = server.post_json("/v1/workflows/hi/runs?wait=10s", json!({})).await;
    assert_eq!(run["output"], "Hello, Lo!");
    server.stop().await;
}
