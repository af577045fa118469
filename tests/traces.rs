//! OpenTelemetry traces (`serve --otlp-endpoint`), received by a real OTLP
//! receiver in this process that decodes `ExportTraceServiceRequest` with
//! the OTLP protobuf types: the span tree of a YAML run (a retried step, a
//! for_each with guest logs, a wait resumed by an event carrying a
//! `traceparent`, a child run) under the `traceparent` its start was sent
//! with; a code workflow's steps; the `traceparent` a granted step's HTTP
//! requests carry; and a `kill -9` mid-run that still ends in a whole trace.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{json, Value};

use crate::code_workflows::{push_and_apply, PROBE};
use crate::crash_recovery::{call, ended, wait_until};
use crate::support::otlp::{attr, find, hex, one, receiver, string, whole, Receiver};
use crate::support::process::Served;
use crate::support::server::TestServer;
use crate::support::*;
use opentelemetry_proto::tonic::trace::v1::Span;

const TRACED: &str = r#"
name: traced
steps:
  - id: flaky
    module: hostile
    input: { mode: flaky, succeed_at: 2 }
    retry: { max_attempts: 3, initial_interval: 10ms }
  - id: each
    needs: [flaky]
    module: hostile
    for_each: [1, 2, 3]
    input: { mode: log, lines: 2 }
  - id: approve
    needs: [each]
    wait:
      event: "go.{{ run.id }}"
  - id: child
    needs: [approve]
    workflow: little
output:
  by: "{{ steps.approve.output.by }}"
"#;

const LITTLE: &str = "
name: little
steps:
  - id: hi
    module: echo
    input: { hi: 1 }
";

const CALLER: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
const SENDER: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

async fn traced_server(receiver: &Receiver) -> TestServer {
    let endpoint = receiver.url.clone();
    let server = TestServer::start_with(move |c| c.otlp_endpoint = Some(endpoint)).await;
    server.push_test_modules().await;
    for (name, yaml) in [("little", LITTLE), ("traced", TRACED)] {
        let (status, body) = server.apply(name, yaml).await;
        assert_eq!(status, 201, "{body}");
    }
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn a_yaml_run_is_one_trace_under_the_traceparent_it_was_started_with() {
    let receiver = receiver().await;
    let server = traced_server(&receiver).await;
    let started = server
        .request(reqwest::Method::POST, "/v1/workflows/traced/runs")
        .header("traceparent", format!("00-{CALLER}-{CALLER_SPAN}-01"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let id = started.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    crate::waits::wait_status(&server, &id, "paused").await;
    let posted = server
        .request(reqwest::Method::POST, "/v1/events")
        .header("traceparent", format!("00-{SENDER}-{SENDER_SPAN}-01"))
        .json(&json!({ "topic": format!("go.{id}"), "data": { "by": "Ada" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let spans = receiver
        .until("run spans of both runs", |s| {
            s.iter().filter(|s| s.name == "run").count() >= 2
        })
        .await;

    let root = one(&spans, "run", "sandstep.run.id", &id);
    assert_eq!(hex(&root.trace_id), CALLER);
    assert_eq!(hex(&root.parent_span_id), CALLER_SPAN);
    assert_eq!(attr(root, "sandstep.workflow.name").as_deref(), Some("traced"));
    assert_eq!(attr(root, "sandstep.run.status").as_deref(), Some("completed"));
    assert_eq!(root.status.as_ref().unwrap().code, 1, "Ok");
    assert!(spans.iter().all(|s| hex(&s.trace_id) == CALLER), "one trace");
    assert!(receiver.services.lock().unwrap().contains("sandstep"));

    let step = |id: &str| one(&spans, "step", "sandstep.step.id", id);
    for name in ["flaky", "each", "approve", "child"] {
        assert_eq!(step(name).parent_span_id, root.span_id, "{name} is under the run");
        assert_eq!(attr(step(name), "sandstep.step.status").as_deref(), Some("succeeded"));
    }
    retried(&spans, step("flaky"));
    // The for_each: an attempt per item, each with its guest's log lines.
    let each = find(&spans, "attempt", "sandstep.step.id", "each");
    let items: HashSet<_> = each.iter().map(|s| attr(s, "sandstep.item.index").unwrap()).collect();
    assert_eq!(items, HashSet::from(["0".into(), "1".into(), "2".into()]));
    assert_eq!(attr(step("each"), "sandstep.step.items").as_deref(), Some("3"));
    for attempt in &each {
        let lines: Vec<_> = attempt
            .events
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    string(
                        e.attributes
                            .iter()
                            .find(|a| a.key == "log.message")
                            .and_then(|a| a.value.clone())
                            .and_then(|v| v.value),
                    ),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [("log".into(), "line 0".into()), ("log".into(), "line 1".into())]
        );
    }
    // The wait, linked to the event's sender.
    let wait = one(&spans, "wait", "sandstep.step.id", "approve");
    assert_eq!(wait.parent_span_id, step("approve").span_id);
    assert_eq!(attr(wait, "sandstep.wait.topic"), Some(format!("go.{id}")));
    let links: Vec<_> = wait.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect();
    assert_eq!(links, [(SENDER.to_string(), SENDER_SPAN.to_string())]);
    assert!(wait.end_time_unix_nano > wait.start_time_unix_nano);
    // The child run, under its parent's step, in the same trace.
    let child = one(&spans, "run", "sandstep.workflow.name", "little");
    assert_ne!(attr(child, "sandstep.run.id").as_deref(), Some(id.as_str()));
    assert_eq!(child.parent_span_id, step("child").span_id);
    let hi = one(&spans, "step", "sandstep.step.id", "hi");
    assert_eq!(hi.parent_span_id, child.span_id);
    assert_eq!(
        one(&spans, "attempt", "sandstep.step.id", "hi").parent_span_id,
        hi.span_id
    );
    whole(&spans, std::slice::from_ref(&root.parent_span_id));
    server.stop().await;
}

/// The retried step's two attempts under it: attempt 1 failed
/// (guest_error), attempt 2 succeeded, each with its module and usage.
fn retried(spans: &[Span], step: &Span) {
    let mut flaky = find(spans, "attempt", "sandstep.step.id", "flaky");
    flaky.sort_by_key(|s| attr(s, "sandstep.attempt.number"));
    flaky.dedup_by_key(|s| s.span_id.clone());
    assert_eq!(flaky.len(), 2);
    assert_eq!(attr(flaky[0], "sandstep.attempt.number").as_deref(), Some("1"));
    assert_eq!(attr(flaky[0], "error.type").as_deref(), Some("guest_error"));
    assert_eq!(flaky[0].status.as_ref().unwrap().code, 2, "Error");
    assert_eq!(attr(flaky[1], "sandstep.attempt.status").as_deref(), Some("succeeded"));
    for attempt in &flaky {
        assert_eq!(attempt.parent_span_id, step.span_id);
        assert_eq!(attr(attempt, "sandstep.module.name").as_deref(), Some("hostile"));
        assert!(attr(attempt, "sandstep.module.digest").unwrap().starts_with("sha256:"));
        assert!(
            attr(attempt, "sandstep.attempt.fuel_consumed")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
        assert!(
            attr(attempt, "sandstep.attempt.peak_memory")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
        assert_eq!(attr(attempt, "sandstep.attempt.cached").as_deref(), Some("false"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_workflows_steps_are_spans_of_its_run() {
    let receiver = receiver().await;
    let endpoint = receiver.url.clone();
    let server = TestServer::start_with(move |c| c.otlp_endpoint = Some(endpoint)).await;
    server.push_test_modules().await;
    let pushed = server
        .request(reqwest::Method::POST, "/v1/modules")
        .query(&[("name", "flow-probe"), ("tag", "v1")])
        .header("content-type", "application/wasm")
        .body(std::fs::read(&guests().flow_probe).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let (status, body) = server.apply("probe", PROBE).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post_json(
            "/v1/workflows/probe/runs?wait=20s",
            json!({ "input": { "mode": "chain", "n": 2 } }),
        )
        .await;
    assert_eq!((status, &run["status"]), (201, &json!("completed")), "{run}");
    let id = run["id"].as_str().unwrap();
    let spans = receiver
        .until("the code run's span", |s| {
            !find(s, "run", "sandstep.run.id", id).is_empty()
        })
        .await;
    let root = one(&spans, "run", "sandstep.run.id", id);
    assert!(
        root.parent_span_id.is_empty(),
        "a run started without traceparent is a root"
    );
    for name in ["s-0", "k-0", "s-1", "k-1"] {
        let step = one(&spans, "step", "sandstep.step.id", name);
        assert_eq!(step.parent_span_id, root.span_id);
        let attempt = one(&spans, "attempt", "sandstep.step.id", name);
        assert_eq!(attempt.parent_span_id, step.span_id);
        assert_eq!(attr(attempt, "sandstep.module.name").as_deref(), Some("hostile"));
    }
    whole(&spans, &[]);
    server.stop().await;
}

/// A local server that records the `traceparent` headers of each request.
async fn recorder() -> (u16, Arc<Mutex<Vec<Vec<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let kept = kept.clone();
        async move {
            let values = headers
                .get_all("traceparent")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            kept.lock().unwrap().push(values);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_steps_http_requests_carry_its_attempt_span_as_traceparent() {
    let receiver = receiver().await;
    let (port, seen) = recorder().await;
    let endpoint = receiver.url.clone();
    let server = TestServer::start_with(move |c| {
        c.otlp_endpoint = Some(endpoint);
        c.grants.allow_http(&format!("127.0.0.1:{port}")).unwrap();
    })
    .await;
    let (status, body) = server.push("httpprobe", &guests().httpprobe).await;
    assert_eq!(status, 201, "{body}");
    let yaml = format!(
        r#"
name: calls
steps:
  - id: call
    module: httpprobe
    grants: {{ http: ["127.0.0.1:{port}"] }}
    input:
      requests:
        - url: "http://127.0.0.1:{port}/own"
          headers: {{ traceparent: "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01" }}
        - url: "http://127.0.0.1:{port}/plain"
"#
    );
    let (status, body) = server.apply("calls", &yaml).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server.post_json("/v1/workflows/calls/runs?wait=20s", json!({})).await;
    assert_eq!((status, &run["status"]), (201, &json!("completed")), "{run}");
    let id = run["id"].as_str().unwrap();
    let spans = receiver
        .until("the call's attempt span", |s| {
            !find(s, "attempt", "sandstep.step.id", "call").is_empty()
        })
        .await;
    let attempt = one(&spans, "attempt", "sandstep.step.id", "call");
    assert_eq!(attr(attempt, "sandstep.run.id").as_deref(), Some(id));
    let expected = format!("00-{}-{}-01", hex(&attempt.trace_id), hex(&attempt.span_id));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![vec![expected.clone()], vec![expected]],
        "one traceparent per request, the attempt's"
    );
    // Each request is a span event of the attempt, in the HTTP conventions.
    let requests: Vec<_> = attempt
        .events
        .iter()
        .filter(|e| e.name == "http.request")
        .map(|e| {
            let get = |key: &str| {
                e.attributes
                    .iter()
                    .find(|a| a.key == key)
                    .map(|a| string(a.value.clone().and_then(|v| v.value)))
            };
            (
                get("http.request.method"),
                get("server.address"),
                get("server.port"),
                get("http.response.status_code"),
            )
        })
        .collect();
    let one_request = (
        Some("GET".to_string()),
        Some("127.0.0.1".to_string()),
        Some(port.to_string()),
        Some("200".to_string()),
    );
    assert_eq!(requests, vec![one_request.clone(), one_request]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_mid_run_the_finished_trace_is_whole() {
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--otlp-endpoint", receiver.url.as_str()];
    let mut served = Served::start(dir.path(), &args);
    let yaml = "
name: napping
steps:
  - id: before
    module: hostile
    input: { mode: ok }
  - id: nap
    needs: [before]
    sleep: 1500ms
  - id: after
    needs: [nap]
    module: hostile
    input: { mode: ok }
";
    push_and_apply(&served.url, &[("hostile", &guests().hostile)], "napping", yaml).await;
    let (status, run) = call(
        &served.url,
        reqwest::Method::POST,
        "/v1/workflows/napping/runs",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let url = served.url.clone();
    wait_until("the nap to start", async || {
        let (_, run) = call(&url, reqwest::Method::GET, &format!("/v1/runs/{id}"), None).await;
        run["steps"][1]["status"] == "waiting"
    })
    .await;
    served.kill();
    // Restarted with the standard variables instead of the flag.
    crate::support::share_compiled(dir.path());
    let mut command = crate::support::process::command();
    crate::support::store::on(&mut command, dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k9")
        .env("OTEL_SERVICE_NAME", "sandstep-restarted");
    let served = Served::spawn(&mut command);
    let run = ended(&served.url, &id).await;
    assert_eq!(run["status"], "completed", "after the restart: {run}");
    let spans = receiver
        .until("the napping run's span", |s| {
            !find(s, "run", "sandstep.run.id", &id).is_empty()
        })
        .await;
    let root = one(&spans, "run", "sandstep.run.id", &id);
    for name in ["before", "nap", "after"] {
        assert_eq!(
            one(&spans, "step", "sandstep.step.id", name).parent_span_id,
            root.span_id
        );
    }
    for name in ["before", "after"] {
        one(&spans, "attempt", "sandstep.step.id", name);
    }
    let nap = one(&spans, "sleep", "sandstep.step.id", "nap");
    assert!(
        nap.end_time_unix_nano - nap.start_time_unix_nano >= 1_400_000_000,
        "the sleep span covers the nap"
    );
    whole(&spans, &[]);
    // The first process may have died before its first export.
    let services = receiver.services.lock().unwrap().clone();
    assert!(
        services.contains("sandstep-restarted"),
        "OTEL_SERVICE_NAME names the service: {services:?}"
    );
    assert!(
        services.iter().all(|s| s == "sandstep" || s == "sandstep-restarted"),
        "{services:?}"
    );
    assert!(
        receiver.keys.lock().unwrap().contains(&"k9".to_string()),
        "OTEL_EXPORTER_OTLP_HEADERS are sent"
    );
    drop(served);
}

/// The runs started by a batch, a webhook delivery and an event's trigger
/// are children of the span each request carried; a cache hit is an
/// attempt span marked cached.
#[tokio::test(flavor = "multi_thread")]
async fn batches_webhooks_and_event_triggers_pass_their_traceparent_on() {
    let receiver = receiver().await;
    let endpoint = receiver.url.clone();
    let server = TestServer::start_with(move |c| {
        c.otlp_endpoint = Some(endpoint);
        c.grants.unsigned_webhooks = true;
    })
    .await;
    server.push_test_modules().await;
    let yaml = "
name: started
triggers:
  - on_event: signup
  - webhook: incoming
    signature: none
steps:
  - id: s
    module: echo
    cache: true
    input: { x: 1 }
";
    let (status, body) = server.apply("started", yaml).await;
    assert_eq!(status, 201, "{body}");
    // A first run records the step's output: the runs below hit the cache.
    let (status, first) = server.post_json("/v1/workflows/started/runs?wait=20s", json!({})).await;
    assert_eq!((status, &first["status"]), (201, &json!("completed")), "{first}");
    let first = first["id"].as_str().unwrap().to_string();
    let parent = |n: u8| (format!("{n:032x}"), format!("{:016x}", u64::from(n) + 0x100));
    let send = |request: reqwest::RequestBuilder, n: u8| {
        let (trace, span) = parent(n);
        request.header("traceparent", format!("00-{trace}-{span}-01"))
    };
    let batch = send(
        server.request(reqwest::Method::POST, "/v1/workflows/started/runs/batch"),
        1,
    )
    .json(&json!({ "runs": [{ "input": {} }, { "input": {} }] }))
    .send()
    .await
    .unwrap();
    assert_eq!(batch.status(), 201);
    let batch: Value = batch.json().await.unwrap();
    let hook = send(server.request(reqwest::Method::POST, "/hooks/incoming"), 2)
        .json(&json!({ "delivery": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 202);
    let hook: Value = hook.json().await.unwrap();
    let event = send(server.request(reqwest::Method::POST, "/v1/events"), 3)
        .json(&json!({ "topic": "signup", "data": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(event.status(), 202);
    let mut expected: Vec<(String, u8)> = vec![
        (batch["runs"][0]["id"].as_str().unwrap().to_string(), 1),
        (batch["runs"][1]["id"].as_str().unwrap().to_string(), 1),
        (hook["run_id"].as_str().unwrap().to_string(), 2),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let triggered = loop {
        let (_, runs) = server.get("/v1/runs?workflow=started").await;
        let ids: Vec<String> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        if let Some(id) = ids
            .iter()
            .find(|id| **id != first && expected.iter().all(|(e, _)| e != *id))
        {
            break id.clone();
        }
        assert!(Instant::now() < deadline, "the event's trigger started no run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    expected.push((triggered, 3));
    for (id, _) in &expected {
        server.wait_run(id).await;
    }
    let spans = receiver
        .until("the four runs' spans", |s| {
            expected
                .iter()
                .all(|(id, _)| !find(s, "run", "sandstep.run.id", id).is_empty())
        })
        .await;
    for (id, n) in &expected {
        let run = one(&spans, "run", "sandstep.run.id", id);
        let (trace, span) = parent(*n);
        assert_eq!(
            (hex(&run.trace_id), hex(&run.parent_span_id)),
            (trace, span),
            "run {id}"
        );
    }
    // Each of the four runs' step was a cache hit of the first run's.
    for (id, _) in &expected {
        let attempt = one(&spans, "attempt", "sandstep.run.id", id);
        assert_eq!(
            attr(attempt, "sandstep.attempt.cached").as_deref(),
            Some("true"),
            "run {id}"
        );
        assert_eq!(
            attr(attempt, "sandstep.attempt.cached_from").as_deref(),
            Some(first.as_str())
        );
    }
    server.stop().await;
}

/// An endpoint that is not an http(s) URL stops `serve` before it opens
/// its store, naming the setting and the value.
#[test]
fn a_bad_otlp_endpoint_stops_the_server_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (endpoint, says) in [
        ("ftp://collector:4318", "must be an http:// or https:// URL"),
        ("not a url", "is not a URL"),
    ] {
        let out = crate::support::process::command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(["--otlp-endpoint", endpoint])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{endpoint} was accepted");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)")
                && stderr.contains(endpoint)
                && stderr.contains(says),
            "{stderr}"
        );
        assert!(!data.join("sandstep.db").exists(), "nothing is opened");
    }
}
