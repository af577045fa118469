//! Grants: outbound HTTP through wasi:http to a local server on 127.0.0.1
//! (there is no outside network), checked against the step's hosts, ports,
//! caps and resolved addresses; and what a server allows workflows to grant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use serde_json::{json, Value};

use sandstep::grants::HostPattern;
use sandstep::limits::Limits;
use sandstep::sandbox::{Access, Attempt, NO_ACCESS};

use crate::support::server::TestServer;
use crate::support::{attempt_with, guests, kind, module};

/// A local HTTP server: `/json`, `/echo` (POST), `/big` (1 MB), `/slow`
/// (answers after 10 s). Counts the requests it answered.
struct Upstream {
    port: u16,
    answered: Arc<AtomicU64>,
}

async fn upstream() -> Upstream {
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    let app = axum::Router::new()
        .route("/json", get(|| async { axum::Json(json!({ "hello": "world" })) }))
        .route("/echo", post(|body: String| async move { body }))
        .route("/big", get(|| async { "x".repeat(1 << 20) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    next.run(request).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Upstream { port, answered }
}

fn granted(patterns: &[&str]) -> Access {
    Access {
        http: patterns.iter().map(|p| HostPattern::parse(p).unwrap()).collect(),
        ..Access::default()
    }
}

fn requests(list: &[Value]) -> String {
    json!({ "requests": list }).to_string()
}

async fn probe(input: &str, limits: &Limits, access: &Access) -> Attempt {
    attempt_with(module(&guests().httpprobe), input, limits, access).await
}

fn results_of(attempt: &Attempt) -> Vec<Value> {
    attempt.output().unwrap_or_else(|| panic!("{attempt:?}"))["results"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn repeated_gets_and_posts_to_a_granted_host_succeed_and_are_audited() {
    let up = upstream().await;
    let mut list = Vec::new();
    for i in 0..20 {
        list.push(json!({ "url": format!("http://127.0.0.1:{}/json", up.port) }));
        list.push(
            json!({ "url": format!("http://127.0.0.1:{}/echo", up.port), "method": "POST", "body": format!("n{i}") }),
        );
    }
    let access = granted(&[&format!("127.0.0.1:{}", up.port)]);
    let attempt = probe(&requests(&list), &Limits::default(), &access).await;
    let results = results_of(&attempt);
    for (i, result) in results.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(
                result,
                &json!({ "status": 200, "body": r#"{"hello":"world"}"# }),
                "request {i}"
            );
        } else {
            assert_eq!(
                result,
                &json!({ "status": 200, "body": format!("n{}", i / 2) }),
                "request {i}"
            );
        }
    }
    assert_eq!(up.answered.load(Ordering::SeqCst), 40);
    let audit = attempt.audit.as_ref().expect("an audit");
    assert_eq!(audit.http.len(), 40);
    let first = &audit.http[0];
    assert_eq!(
        (first.method.as_str(), first.host.clone(), first.status, first.bytes),
        ("GET", format!("127.0.0.1:{}", up.port), Some(200), 17)
    );
    assert_eq!(
        (audit.http[1].method.as_str(), audit.http[1].bytes),
        ("POST", 4),
        "2 bytes each way"
    );
}

#[tokio::test]
async fn ungranted_hosts_ports_and_names_resolving_to_loopback_are_refused_in_the_guest() {
    let up = upstream().await;
    let other = upstream().await;
    // localhost is granted by name on the other port, 127.0.0.1 exactly
    // on the first port only.
    let access = granted(&[&format!("127.0.0.1:{}", up.port), &format!("localhost:{}", other.port)]);
    let list = [
        json!({ "url": format!("http://127.0.0.2:{}/json", up.port) }),
        json!({ "url": format!("http://127.0.0.1:{}/json", other.port) }),
        json!({ "url": format!("http://localhost:{}/json", other.port) }),
        json!({ "url": format!("http://127.0.0.1:{}/json", up.port) }),
    ];
    let attempt = probe(&requests(&list), &Limits::default(), &access).await;
    let results = results_of(&attempt);
    assert!(
        results[0]["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{results:?}"
    );
    assert!(
        results[1]["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{results:?}"
    );
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .contains("DestinationIpProhibited"),
        "localhost is granted by name but resolves to loopback, not granted on that port: {results:?}"
    );
    assert_eq!(results[3]["status"], 200, "the exact address granted is reachable");
    assert_eq!(
        up.answered.load(Ordering::SeqCst) + other.answered.load(Ordering::SeqCst),
        1
    );

    let audit = attempt.audit.as_ref().unwrap();
    assert_eq!(audit.http[0].error.as_deref(), Some("host not granted"));
    assert_eq!(audit.http[1].error.as_deref(), Some("host not granted"));
    assert!(
        audit.http[2]
            .error
            .as_deref()
            .unwrap()
            .contains("resolves to a loopback"),
        "{audit:?}"
    );
    let logged: Vec<&str> = attempt.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        logged.contains(&format!("http GET 127.0.0.2:{}: host not granted", up.port).as_str()),
        "{logged:?}"
    );
}

#[tokio::test]
async fn request_and_byte_caps_fail_inside_the_guest() {
    let up = upstream().await;
    let access = granted(&[&format!("127.0.0.1:{}", up.port)]);
    let url = format!("http://127.0.0.1:{}/json", up.port);
    let limits = Limits {
        http_requests: 3,
        ..Limits::default()
    };
    let list: Vec<Value> = (0..5).map(|_| json!({ "url": url })).collect();
    let attempt = probe(&requests(&list), &limits, &access).await;
    let results = results_of(&attempt);
    assert_eq!(results[2]["status"], 200);
    assert!(
        results[3]["error"].as_str().unwrap().contains("ConnectionLimitReached"),
        "{results:?}"
    );
    assert_eq!(up.answered.load(Ordering::SeqCst), 3);

    let limits = Limits {
        http_bytes: 100_000,
        ..Limits::default()
    };
    let big = json!({ "url": format!("http://127.0.0.1:{}/big", up.port) });
    let attempt = probe(&requests(&[big]), &limits, &access).await;
    let results = results_of(&attempt);
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap()
            .contains("body size exceeds limit"),
        "{results:?}"
    );
    let audit = attempt.audit.unwrap();
    assert!(
        audit.http[0].error.as_deref().unwrap().contains("100000 body bytes"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_slow_server_hits_the_attempt_timeout() {
    let up = upstream().await;
    let access = granted(&[&format!("127.0.0.1:{}", up.port)]);
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let slow = json!({ "url": format!("http://127.0.0.1:{}/slow", up.port) });
    let started = std::time::Instant::now();
    let attempt = probe(&requests(&[slow]), &limits, &access).await;
    assert_eq!(kind(&attempt), "timeout", "{attempt:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_module_importing_wasi_http_without_a_grant_is_denied_before_it_runs() {
    let attempt = probe(&requests(&[]), &Limits::default(), &NO_ACCESS).await;
    assert_eq!(kind(&attempt), "capability_denied");
    let message = attempt.failure().unwrap().to_string();
    assert!(
        message.contains("wasi:http/") && message.contains("grants.http"),
        "{message}"
    );
    assert_eq!(attempt.fuel_consumed, 0, "no guest code ran");
}

const CALLS: &str = r#"
name: calls
steps:
  - id: call
    module: httpprobe
    grants:
      http: ["127.0.0.1:PORT"]
    input: { requests: [ { url: "http://127.0.0.1:PORT/json" } ] }
output: "{{ steps.call.output.results[0] }}"
"#;

#[tokio::test]
async fn the_server_refuses_grants_it_does_not_allow_and_shows_each_attempts_audit() {
    let up = upstream().await;
    let yaml = CALLS.replace("PORT", &up.port.to_string());

    let strict = TestServer::start().await;
    assert_eq!(strict.push("httpprobe", &guests().httpprobe).await.0, 201);
    let (status, body) = strict.apply("calls", &yaml).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["location"], "steps.call.grants.http[0]");
    assert_eq!(
        body["errors"][0]["message"],
        format!(
            "http host 127.0.0.1:{} is not allowed by this server (--allow-http: none)",
            up.port
        )
    );
    let reads = yaml.replace(
        "http: [\"127.0.0.1",
        "files: { read: [data] }\n      http: [\"127.0.0.1",
    );
    let (status, body) = strict.apply("calls", &reads).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("directory \\\"data\\\" is not allowed by this server"),
        "{body}"
    );
    strict.stop().await;

    let port = up.port;
    let dir = tempfile::tempdir().unwrap();
    let open = TestServer::start_in(dir.path(), move |config| {
        config.grants.allow_http(&format!("127.0.0.1:{port}")).unwrap();
    })
    .await;
    assert_eq!(open.push("httpprobe", &guests().httpprobe).await.0, 201);
    let (status, body) = open.apply("calls", &yaml).await;
    assert_eq!(status, 201, "{body}");
    let id = open.start_run("calls").await;
    let run = open.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!({ "status": 200, "body": r#"{"hello":"world"}"# }));
    let attempt = &run["steps"][0]["attempts"][0];
    assert_eq!(
        attempt["audit"],
        json!({ "http": [{ "method": "GET", "host": format!("127.0.0.1:{port}"), "status": 200, "bytes": 17 }] }),
        "{run}"
    );
    open.stop().await;

    // Restarted without the allowance: the stored version still loads and
    // its runs start, and the step is refused the grant it no longer has.
    let strict = TestServer::start_in(dir.path(), |_| {}).await;
    let id = strict.start_run("calls").await;
    let run = strict.wait_run(&id).await;
    let error = &run["steps"][0]["error"];
    assert_eq!(
        (run["status"].as_str(), error["kind"].as_str()),
        (Some("failed"), Some("capability_denied")),
        "{run}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("is not allowed by this server"),
        "{error}"
    );
    assert!(
        run["steps"][0]["attempts"].as_array().unwrap().is_empty(),
        "no attempt ran: {run}"
    );
    assert_eq!(up.answered.load(Ordering::SeqCst), 1);
    strict.stop().await;
}

const EXAMPLES: &str = r#"
name: fetch-examples
defaults:
  grants:
    http: ["127.0.0.1:PORT"]
steps:
  - id: rust_get
    module: fetch-json-rs
    for_each: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    input: { url: "http://127.0.0.1:PORT/json" }
  - id: rust_post
    module: fetch-json-rs
    for_each: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    input: { url: "http://127.0.0.1:PORT/echo", body: { n: "{{ item }}" } }
  - id: js_get
    module: fetch-json-js
    for_each: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    input: { url: "http://127.0.0.1:PORT/json" }
  - id: js_post
    module: fetch-json-js
    for_each: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    input: { url: "http://127.0.0.1:PORT/echo", body: { n: "{{ item }}" } }
  - id: config
    module: read-file
    grants:
      files: { read: [config] }
    input: { path: /config/settings.json }
output:
  rust_get: "{{ steps.rust_get.output }}"
  rust_post: "{{ steps.rust_post.output }}"
  js_get: "{{ steps.js_get.output }}"
  js_post: "{{ steps.js_post.output }}"
  config: "{{ steps.config.output }}"
"#;

/// The example guests (Rust with wstd, JavaScript with fetch, a command
/// reading a granted file) through a real server, ten GETs and ten POSTs each.
#[tokio::test(flavor = "multi_thread")]
async fn the_example_guests_fetch_and_read_what_they_are_granted() {
    crate::support::language_guests();
    let up = upstream().await;
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("settings.json"), r#"{"retries": 3}"#).unwrap();
    let port = up.port;
    let dir = config.path().to_path_buf();
    let server = TestServer::start_with(move |c| {
        c.grants.allow_http(&format!("127.0.0.1:{port}")).unwrap();
        c.grants.allow_read(&format!("config={}", dir.display())).unwrap();
    })
    .await;
    let root = crate::support::root().join("target/guests");
    for (name, path) in [
        ("fetch-json-rs", guests().example("fetch-json")),
        ("fetch-json-js", root.join("javascript/fetch-json.wasm")),
        ("read-file", guests().example("read-file")),
    ] {
        let (status, body) = server.push(name, &path).await;
        assert_eq!(status, 201, "{name}: {body}");
    }
    let (status, body) = server
        .apply("fetch-examples", &EXAMPLES.replace("PORT", &port.to_string()))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = server.start_run("fetch-examples").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let output = &run["output"];
    for step in ["rust_get", "js_get"] {
        let items = output[step].as_array().unwrap();
        assert_eq!(items.len(), 10);
        assert!(
            items
                .iter()
                .all(|i| i == &json!({ "status": 200, "body": { "hello": "world" } })),
            "{step}: {items:?}"
        );
    }
    for step in ["rust_post", "js_post"] {
        let items = output[step].as_array().unwrap();
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item, &json!({ "status": 200, "body": { "n": i + 1 } }), "{step}");
        }
    }
    assert_eq!(
        output["config"],
        json!({ "path": "/config/settings.json", "bytes": 14, "json": { "retries": 3 } })
    );
    assert_eq!(up.answered.load(Ordering::SeqCst), 40);
    server.stop().await;
}
