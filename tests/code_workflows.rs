//! Workflows as code, through a real server: the order example (Rust SDK)
//! completes, pauses on its approval and resumes by replaying its journal;
//! `kill -9` mid-run loses nothing and runs no recorded step again; each
//! way the code can go wrong fails the run with its kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash_recovery::call;
use crate::support::process::Served;
use crate::support::server::{problem, TestServer};
use crate::support::*;

const ORDER: &str = include_str!("../examples/order/order.yaml");

pub(crate) const PROBE: &str = "
name: probe
code: flow-probe:v1
defaults:
  grants: {}
workflow_limits: { fuel: 200000000, memory: 32MiB }
";

/// A server with the order example applied, its code in `language`.
pub(crate) async fn order_server(language: &str) -> TestServer {
    let server = TestServer::start().await;
    let example = order_example();
    let flow = &example.flows.iter().find(|(l, _)| *l == language).unwrap().1;
    for (name, path) in [("order-flow", flow), ("order-steps", &example.steps)] {
        let (status, body) = answer_push(&server, name, "v1", path).await;
        assert_eq!(status, 201, "{language}: {body}");
        if name == "order-flow" {
            assert_eq!(body["kind"], "workflow", "{body}");
        }
    }
    let (status, body) = server.apply("order", ORDER).await;
    assert_eq!(status, 201, "{body}");
    server
}

async fn answer_push(server: &TestServer, name: &str, tag: &str, path: &std::path::Path) -> (u16, Value) {
    crate::support::server::answer(
        server
            .request(reqwest::Method::POST, "/v1/modules")
            .query(&[("name", name), ("tag", tag)])
            .header("content-type", "application/wasm")
            .body(std::fs::read(path).unwrap()),
    )
    .await
}

async fn probe_server() -> TestServer {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    let (status, body) = answer_push(&server, "flow-probe", "v1", &guests().flow_probe).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.apply("probe", PROBE).await;
    assert_eq!(status, 201, "{body}");
    server
}

async fn run_probe(server: &TestServer, input: Value) -> Value {
    let (status, run) = server
        .post_json("/v1/workflows/probe/runs?wait=20s", json!({ "input": input }))
        .await;
    assert_eq!(status, 201, "{run}");
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn the_order_example_runs_in_rust_python_and_typescript() {
    for (language, _) in &order_example().flows {
        let started = Instant::now();
        let server = order_server(language).await;
        eprintln!(
            "the order example in {language}: pushed and applied in {:?}",
            started.elapsed()
        );
        // The journal's length for the small and the large order: the
        // TypeScript SDK submits each step and awaits it (two calls), the
        // others call `step` and join the shipments with `await-all`.
        let calls = if *language == "typescript" { (10, 13) } else { (5, 7) };
        a_small_order_completes_and_lists_its_calls_as_steps(&server, calls).await;
        a_large_order_pauses_for_its_approval_and_resumes_by_replay(&server, calls).await;
        eprintln!("the order example in {language}: passed in {:?}", started.elapsed());
        server.stop().await;
    }
}

async fn a_small_order_completes_and_lists_its_calls_as_steps(server: &TestServer, calls: (u64, u64)) {
    let order = json!({ "order_id": "o-1", "customer": "ada", "amount": 250, "items": ["book", "pen"] });
    let (status, run) = server
        .post_json("/v1/workflows/order/runs?wait=20s", json!({ "input": order }))
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    let run_id = run["id"].as_str().unwrap();
    assert_eq!(
        run["output"],
        json!({
            "order_id": "o-1",
            "charge": "ch-o-1",
            "approval_event": null,
            "shipped": [
                { "item": "book", "tracking": "trk-o-1-book" },
                { "item": "pen", "tracking": "trk-o-1-pen" }
            ]
        })
    );
    let (_, view) = server.get(&format!("/v1/runs/{run_id}")).await;
    let steps: Vec<(&str, &str)> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("validate", "module"),
            ("charge", "module"),
            ("ship-0", "module"),
            ("ship-1", "module"),
            ("notify", "module")
        ]
    );
    // In call order: each step's `call` is its position in the journal
    // (an SDK that submits and then awaits makes two calls per step).
    let positions: Vec<u64> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["call"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(view["code"]["calls"], calls.0, "{}", view["code"]);
    assert!(view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "succeeded"));
    // The charge's attempt got the call's idempotency key.
    assert_eq!(
        view["steps"][1]["output"]["idempotency_key"],
        format!("{run_id}/charge").as_str()
    );
    assert_eq!(view["code"]["module"], "order-flow:v1");
    assert!(view["code"]["fuel_consumed"].as_u64().unwrap() > 0, "{}", view["code"]);
}

async fn a_large_order_pauses_for_its_approval_and_resumes_by_replay(server: &TestServer, calls: (u64, u64)) {
    let order = json!({ "order_id": "o-2", "customer": "bo", "amount": 5000, "items": ["a", "b", "c"] });
    let run_id = crate::waits::start(server, "order", order).await;
    // Paused: it holds no instance now.
    crate::waits::wait_status(server, &run_id, "paused").await;
    let (_, view) = server.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(view["steps"][2]["id"], "approval");
    assert_eq!(view["steps"][2]["kind"], "wait");
    assert_eq!(view["steps"][2]["status"], "waiting");
    assert_eq!(view["steps"][2]["waiting_for"], "approval.o-2");

    let (status, posted) = server
        .post_json(
            "/v1/events",
            json!({ "topic": "approval.o-2", "data": { "approved": true } }),
        )
        .await;
    assert!(status < 300 && posted["created"] == true, "{status} {posted}");
    let done = server.wait_run(&run_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["approval_event"], posted["id"]);
    assert_eq!(done["output"]["shipped"].as_array().unwrap().len(), 3);
    // Replay answered validate and charge from the journal: each ran once.
    let view = server.get(&format!("/v1/runs/{run_id}")).await.1;
    for step in ["validate", "charge"] {
        let step = view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == step)
            .unwrap();
        assert_eq!(step["attempts"].as_array().unwrap().len(), 1, "{step}");
    }
    assert_eq!(view["code"]["calls"], calls.1, "{}", view["code"]);

    // A refusal ends the run with the code's own error.
    let order = json!({ "order_id": "o-3", "customer": "cy", "amount": 2000, "items": ["x"] });
    let run_id = crate::waits::start(server, "order", order).await;
    crate::waits::wait_status(server, &run_id, "paused").await;
    server
        .post_json(
            "/v1/events",
            json!({ "topic": "approval.o-3", "data": { "approved": false } }),
        )
        .await;
    let done = server.wait_run(&run_id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"], "workflow_error: order o-3 was not approved");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_workflow_must_name_workflow_code() {
    let server = order_server("rust").await;
    let (status, body) = server.apply("wrong", "name: wrong\ncode: order-steps:v1\n").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(problem(&body), "invalid-workflow");
    let text = body.to_string();
    assert!(text.contains("\"code\""), "{text}");
    assert!(
        text.contains("module \\\"order-steps:v1\\\" is a step, not a workflow"),
        "{text}"
    );
    let (status, body) = server
        .apply(
            "both",
            "name: both\ncode: order-flow:v1\nsteps:\n  - id: a\n    sleep: 1s\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("a workflow has `steps` or `code`, not both"),
        "{body}"
    );
    // Workflow code is not a step.
    let (status, body) = server
        .apply(
            "as-step",
            "name: as-step\nsteps:\n  - id: a\n    module: order-flow:v1\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("is workflow code, not a step"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_way_the_code_goes_wrong_fails_with_its_kind() {
    let server = probe_server().await;
    let cases = [
        (
            json!({ "mode": "twice" }),
            "invalid_call: the call name \"same\" is used twice",
        ),
        (json!({ "mode": "panic" }), "workflow_trap: "),
        (json!({ "mode": "error" }), "workflow_error: the order was refused"),
        (
            json!({ "mode": "step-error" }),
            "workflow_error: guest_error: the guest says no",
        ),
        (json!({ "mode": "spin" }), "fuel_exhausted: "),
        (json!({ "mode": "grow" }), "memory_limit: "),
    ];
    for (input, expected) in cases {
        let run = run_probe(&server, input.clone()).await;
        assert_eq!(run["status"], "failed", "{input}: {run}");
        let error = run["error"].as_str().unwrap();
        assert!(error.starts_with(expected), "{input}: {error}");
        if input["mode"] == "panic" {
            assert!(error.contains("the workflow gave up"), "{error}");
        }
    }
    // A grant beyond defaults.grants fails the call, and the code sees why.
    let run = run_probe(&server, json!({ "mode": "grant" })).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["kind"], "capability_denied", "{run}");
    assert!(
        run["output"]["message"].as_str().unwrap().contains("grants.http"),
        "{run}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn await_next_order_is_replayed_as_recorded() {
    let server = probe_server().await;
    // The nap parks the run; its revival replays both awaits.
    let run = run_probe(&server, json!({ "mode": "race", "nap_ms": 300 })).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let done = server.wait_run(&run_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({ "first": "quick", "second": 1 }));
    let (_, view) = server.get(&format!("/v1/runs/{run_id}")).await;
    let ids: Vec<&str> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["slow", "quick", "nap"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_run_waiting_for_an_event_gets_it_with_recorded_values() {
    let server = probe_server().await;
    let run_id = crate::waits::start(&server, "probe", json!({ "mode": "wait", "topic": "probe.go" })).await;
    crate::waits::wait_status(&server, &run_id, "paused").await;
    let (_, posted) = server
        .post_json("/v1/events", json!({ "topic": "probe.go", "data": { "n": 7 } }))
        .await;
    let done = server.wait_run(&run_id).await;
    assert_eq!(
        done["output"],
        json!({ "event": posted["id"], "data": { "n": 7 }, "now": true, "random": true })
    );
    server.stop().await;
}

/// Events of a run, from its SSE stream (the run has ended).
pub(crate) async fn events_of(url: &str, run_id: &str) -> Vec<Value> {
    let text = reqwest::get(format!("{url}/v1/runs/{run_id}/events"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// A local HTTP server counting the POSTs to each path, answering each
/// after 40 ms: the guest-side count of the times each step ran.
async fn counter() -> (u16, Arc<Mutex<HashMap<String, u64>>>) {
    let counts: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let seen = counts.clone();
    let app = axum::Router::new().route(
        "/{name}",
        axum::routing::post(move |axum::extract::Path(name): axum::extract::Path<String>| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap().entry(name).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
                "counted"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, counts)
}

pub(crate) async fn push_and_apply(url: &str, modules: &[(&str, &std::path::Path)], name: &str, yaml: &str) {
    let http = reqwest::Client::new();
    for (module, path) in modules {
        let query = match module.split_once(':') {
            Some((name, tag)) => format!("name={name}&tag={tag}"),
            None => format!("name={module}"),
        };
        let pushed = http
            .post(format!("{url}/v1/modules?{query}"))
            .header("content-type", "application/wasm")
            .body(std::fs::read(path).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), 201, "{module}");
    }
    let applied = http
        .put(format!("{url}/v1/workflows/{name}"))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(applied.status(), 201, "{}", applied.text().await.unwrap());
}

async fn wait_ended(url: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, run) = call(url, reqwest::Method::GET, &format!("/v1/runs/{run_id}"), None).await;
        if run["status"] == "completed" || run["status"] == "failed" {
            return run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_code_run_loses_nothing_and_runs_no_recorded_step_again() {
    let (port, counts) = counter().await;
    let allow = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Served::start(dir.path(), &["--allow-http", &allow]);
    let g = guests();
    let yaml = PROBE
        .replace("fuel: 200000000", "fuel: 5000000000")
        .replace("grants: {}", &format!("grants: {{ http: [\"{allow}\"] }}"));
    let modules = [
        ("hostile", g.hostile.as_path()),
        ("httpprobe", g.httpprobe.as_path()),
        ("flow-probe:v1", g.flow_probe.as_path()),
    ];
    push_and_apply(&server.url, &modules, "probe", &yaml).await;
    let ping = format!("http://{allow}");
    let (status, run) = call(
        &server.url,
        reqwest::Method::POST,
        "/v1/workflows/probe/runs",
        Some(json!({ "input": { "mode": "chain", "n": 20, "ping": ping } })),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    for round in 0..10u64 {
        tokio::time::sleep(Duration::from_millis(60 + fastrand_ms(round) / 2)).await;
        server.kill();
        server = Served::start(dir.path(), &["--allow-http", &allow]);
    }
    let done = wait_ended(&server.url, &run_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["output"],
        json!({ "steps": 40, "last_key": format!("{run_id}/k-19") })
    );
    let events = events_of(&server.url, &run_id).await;
    // Every call was recorded once, at positions 1..=40.
    let positions: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "workflow.called")
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=40).collect::<Vec<_>>());
    // No step started again once its success was recorded, and every
    // attempt of a step had the step's idempotency key.
    let mut succeeded: HashMap<String, u64> = HashMap::new();
    let mut started: HashMap<String, u64> = HashMap::new();
    for event in &events {
        let step = event["step"].as_str().unwrap_or_default().to_string();
        match event["type"].as_str().unwrap() {
            "step.succeeded" => {
                assert!(succeeded.insert(step, event["seq"].as_u64().unwrap()).is_none());
            }
            "step.started" => {
                assert!(!succeeded.contains_key(&step), "{step} started after it succeeded");
                assert_eq!(event["idempotency_key"], format!("{run_id}/{step}").as_str());
                *started.entry(step).or_default() += 1;
            }
            _ => {}
        }
    }
    assert_eq!(succeeded.len(), 40);
    // The guest side agrees: each s-i ran at least once and never more
    // often than its attempts were recorded as started.
    let counts = counts.lock().unwrap().clone();
    for i in 0..20 {
        let name = format!("s-{i}");
        let ran = counts.get(&name).copied().unwrap_or(0);
        assert!(
            ran >= 1 && ran <= started[&name],
            "{name} ran {ran} times, started {}",
            started[&name]
        );
    }
    assert_eq!(counts.len(), 20, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_run_parked_on_a_wait_survives_kill_9_and_resumes_on_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Served::start(dir.path(), &[]);
    let g = guests();
    let modules = [
        ("hostile", g.hostile.as_path()),
        ("flow-probe:v1", g.flow_probe.as_path()),
    ];
    push_and_apply(&server.url, &modules, "probe", PROBE).await;
    let (status, run) = call(
        &server.url,
        reqwest::Method::POST,
        "/v1/workflows/probe/runs",
        Some(json!({ "input": { "mode": "wait", "topic": "go.parked" } })),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, run) = call(&server.url, reqwest::Method::GET, &format!("/v1/runs/{run_id}"), None).await;
        if run["status"] == "paused" {
            break;
        }
        assert!(Instant::now() < deadline, "the run never paused: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let server = Served::start(dir.path(), &[]);
    let (_, view) = call(&server.url, reqwest::Method::GET, &format!("/v1/runs/{run_id}"), None).await;
    assert_eq!(view["status"], "paused", "{view}");
    assert_eq!(view["steps"][0]["status"], "waiting", "{view}");
    let (status, posted) = call(
        &server.url,
        reqwest::Method::POST,
        "/v1/events",
        Some(json!({ "topic": "go.parked", "data": { "n": 7 } })),
    )
    .await;
    assert!(status < 300, "{posted}");
    let done = wait_ended(&server.url, &run_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["output"],
        json!({ "event": posted["id"], "data": { "n": 7 }, "now": true, "random": true })
    );
}

/// A spread of delays between kills without a random source: 0..240 ms.
fn fastrand_ms(round: u64) -> u64 {
    (round * 97 + 31) % 240
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_from_a_call_replays_the_calls_before_it_and_runs_the_rest() {
    let server = probe_server().await;
    let first = run_probe(&server, json!({ "mode": "chain", "n": 3 })).await;
    assert_eq!(first["status"], "completed", "{first}");
    let first_id = first["id"].as_str().unwrap();
    let (status, again) = server
        .post_json(&format!("/v1/runs/{first_id}/rerun?wait=20s"), json!({ "from": "s-1" }))
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["status"], "completed", "{again}");
    let again_id = again["id"].as_str().unwrap();
    assert_eq!(
        again["output"],
        json!({ "steps": 6, "last_key": format!("{again_id}/k-2") })
    );
    let (_, view) = server.get(&format!("/v1/runs/{again_id}")).await;
    let shape: Vec<(&str, bool, usize)> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["reused"] == true,
                s["attempts"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("s-0", true, 0),
            ("k-0", true, 0),
            ("s-1", false, 1),
            ("k-1", false, 1),
            ("s-2", false, 1),
            ("k-2", false, 1)
        ]
    );
    // A call the run never made is named as such.
    let (status, body) = server
        .post_json(&format!("/v1/runs/{first_id}/rerun"), json!({ "from": "nope" }))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("made no call named \\\"nope\\\""), "{body}");
    server.stop().await;
}

/// A stored journal replayed directly (`run::code::replay`): against the
/// module that wrote it, every call matches; against another module the
/// first differing call is named as a revival would name it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_journal_replays_against_its_module_and_diverges_against_another() {
    use sandstep::run::code::replay::{replay, Replayed};
    let server = order_server("rust").await;
    let order = json!({ "order_id": "o-9", "customer": "di", "amount": 250, "items": ["cup", "pot"] });
    let (_, run) = server
        .post_json("/v1/workflows/order/runs?wait=20s", json!({ "input": order }))
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    let events: Vec<sandstep::run::Event> = events_of(&server.url, &run_id)
        .await
        .into_iter()
        .map(|e| serde_json::from_value(e).unwrap())
        .collect();
    server.stop().await;

    let workflow = sandstep::workflow::load(ORDER, &sandstep::limits::Caps::default(), None).unwrap();
    let limits = sandstep::limits::WorkflowLimits::default();
    let flows = &order_example().flows;
    let flow = |language: &str| module(&flows.iter().find(|(l, _)| *l == language).unwrap().1);
    let sandbox = sandbox();
    let own = replay(sandbox, flow("rust"), &workflow, &run_id, &events, &limits).await;
    assert!(matches!(own, Replayed::Ended { result: Ok(_), .. }), "{own:?}");

    // The TypeScript order submits its charge and awaits it: the journal's
    // second call is a `step`, the code's an `await-next`.
    let Replayed::Diverged(message) = replay(sandbox, flow("typescript"), &workflow, &run_id, &events, &limits).await
    else {
        panic!("the TypeScript module replayed the Rust journal");
    };
    assert!(
        message.starts_with("call 2: recorded step \"charge\" (order-steps:v1@sha256:"),
        "{message}"
    );
    assert!(message.contains(", got await-next"), "{message}");

    // Other code altogether differs at the first call.
    let probe = module(&guests().flow_probe);
    let Replayed::Diverged(message) = replay(sandbox, probe, &workflow, &run_id, &events, &limits).await else {
        panic!("the probe replayed the order's journal");
    };
    assert!(message.starts_with("call 1: recorded step \"validate\""), "{message}");
    assert!(message.contains("got step \"s-0\""), "{message}");
}
