//! Steps written in seven languages (guest-examples/<language>/), built from
//! source by each language's own toolchain, uploaded to a real server and run
//! through the HTTP API.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::language_guests;
use crate::support::server::TestServer;

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

/// Uploads every language's module under its example name; each upload
/// compiles the module once, so runs start on the cached artifact.
async fn push_language_modules(server: &TestServer) {
    for (name, path) in language_guests() {
        let (status, module) = server.push(name, path).await;
        assert_eq!(status, 201, "{name}: {module}");
        let kind = if ["top-words", "invoice", "checksum", "format-money"].contains(name) {
            "command"
        } else {
            "step"
        };
        assert_eq!(module["kind"], kind, "{name}: {module}");
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn orders_input() -> Value {
    json!({
        "orders": [
            {"id": "A1", "customer": " Ada ", "items": [{"sku": "pen", "qty": 3, "price": 1.5}, {"sku": "ink", "qty": 1, "price": 4.25}]},
            {"id": "A2", "customer": "Bob", "items": [{"sku": "pad", "qty": 2, "price": 2.4}]},
            {"id": "A3", "customer": "Cy", "items": [{"sku": "pen", "qty": 10, "price": 1.5}]},
            {"id": "A4", "customer": "Ada", "items": [{"sku": "pad", "qty": 5, "price": 2.4}]}
        ],
        "note": "Ada ordered pens and ink and pads; Cy ordered pens."
    })
}

/// For each module: an input it refuses (with the message it gives), which
/// must fail once whatever the retry policy says.
const REFUSED: &[(&str, &str, &str)] = &[
    ("filter-orders", r#"{"orders": "none"}"#, "orders must be a list"),
    (
        "rank-customers",
        r#"{"orders": [{"customer": "Ada"}]}"#,
        "orders[0].total must be a number",
    ),
    (
        "statistics",
        r#"{"values": [1, "x"]}"#,
        r#"values[1] is not a number: "x""#,
    ),
    (
        "histogram",
        r#"{"values": []}"#,
        "values is empty: there is nothing to count",
    ),
    ("top-words", r#"{"text": 5}"#, "text must be a string"),
    (
        "invoice",
        r#"{"customers": [], "tax_rate": 2}"#,
        "tax_rate must be a number between 0 and 1",
    ),
    (
        "checksum",
        r#"{"document": 1, "algorithm": "md5"}"#,
        "algorithm must be sha256 or blake3",
    ),
    (
        "checksum-step",
        r#"{"document": 1, "algorithm": "md5"}"#,
        "algorithm must be sha256 or blake3",
    ),
    (
        "format-money",
        r#"{"amounts": [1], "currency": "EURO"}"#,
        "currency must be a three-letter code such as EUR",
    ),
];

/// A workflow with two steps per module: one refused input, one retryable
/// failure; three attempts allowed each, and the run carries on.
fn failures_workflow() -> String {
    let retry = "retry: { max_attempts: 3, initial_interval: 10ms, backoff: 1.0, max_interval: 10ms, jitter: 0 }";
    let mut yaml = String::from("name: failures\nsteps:\n");
    for (module, refused, _) in REFUSED {
        let id = module.replace('-', "_");
        yaml += &format!(
            "  - id: {id}_refused\n    module: {module}\n    input: {refused}\n    {retry}\n    on_failure: continue\n"
        );
        yaml += &format!(
            "  - id: {id}_busy\n    module: {module}\n    input: {{ simulate_failure: {{ message: \"{module} upstream busy\", retryable: true }} }}\n    {retry}\n    on_failure: continue\n"
        );
    }
    yaml
}

#[tokio::test(flavor = "multi_thread")]
async fn steps_in_seven_languages_chain_and_fail_over_http() {
    let server = TestServer::start().await;
    push_language_modules(&server).await;

    // One workflow through all of them: JavaScript, TypeScript, Python, C,
    // Go, AssemblyScript, Zig, and a C command.
    let yaml = std::fs::read_to_string(crate::support::root().join("examples/orders-report.yaml")).unwrap();
    let (status, body) = server.apply("orders-report", &yaml).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post_json(
            "/v1/workflows/orders-report/runs?wait=60s",
            json!({ "input": orders_input() }),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let run = server.wait_run(run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "completed", "{run:#}");

    assert_eq!(
        step(&run, "filter")["output"],
        json!({
            "orders": [
                {"id": "A1", "customer": "Ada", "total": 8.75, "items": 2},
                {"id": "A3", "customer": "Cy", "total": 15, "items": 1},
                {"id": "A4", "customer": "Ada", "total": 12, "items": 1}
            ],
            "dropped": ["A2"]
        })
    );
    assert_eq!(
        step(&run, "filter")["attempts"][0]["logs"][0]["message"],
        "attempt 1: kept 3 of 4 orders (min_total 5)"
    );
    assert_eq!(
        step(&run, "rank")["output"],
        json!({
            "customers": [
                {"customer": "Ada", "orders": 2, "total": 20.75, "share": 58},
                {"customer": "Cy", "orders": 1, "total": 15, "share": 42}
            ],
            "grand_total": 35.75
        })
    );
    assert_eq!(
        step(&run, "stats")["output"],
        json!({"count": 3, "sum": 35.75, "min": 8.75, "max": 15, "mean": 11.916667, "median": 12, "stdev": 3.125833})
    );
    assert_eq!(
        step(&run, "histogram")["output"],
        json!({"count": 3, "min": 8.75, "max": 15, "buckets": [
            {"from": 8.75, "to": 11.875, "count": 1},
            {"from": 11.875, "to": 15, "count": 2}
        ]})
    );
    let invoice = &step(&run, "invoice")["output"];
    assert_eq!(
        invoice,
        &json!({
            "currency": "EUR",
            "lines": [
                {"customer": "Ada", "net": 20.75, "tax": 4.15, "gross": 24.9},
                {"customer": "Cy", "net": 15, "tax": 3, "gross": 18}
            ],
            "totals": {"net": 35.75, "tax": 7.15, "gross": 42.9}
        })
    );
    assert_eq!(
        step(&run, "invoice")["attempts"][0]["logs"][0]["message"],
        "invoiced 2 customers, 4290 cents gross",
        "a command's stderr lines are its logs"
    );
    assert_eq!(
        step(&run, "money")["output"],
        json!({"formatted": ["EUR 24.90", "EUR 18.00"], "total": "EUR 42.90"})
    );
    // The Zig command digests the invoice exactly as the Go step wrote it,
    // and the Zig step component the formatted totals.
    let text = serde_json::to_string(invoice).unwrap();
    let digest = sha256_hex(&text);
    assert_eq!(
        step(&run, "fingerprint")["output"],
        json!({"algorithm": "sha256", "digest": digest, "bytes": text.len()})
    );
    let totals = serde_json::to_string(&step(&run, "money")["output"]).unwrap();
    assert_eq!(
        step(&run, "seal")["output"],
        json!({"algorithm": "sha256", "digest": sha256_hex(&totals), "bytes": totals.len()})
    );
    assert_eq!(
        step(&run, "seal")["attempts"][0]["logs"][0],
        json!({"level": "info", "message": format!("sha256 of {} bytes of JSON", totals.len())}),
        "the hand-written component calls the host's log"
    );
    assert_eq!(
        step(&run, "words")["output"],
        json!({"words": [{"word": "and", "count": 2}, {"word": "ordered", "count": 2}], "total": 10, "distinct": 7})
    );
    assert_eq!(
        run["output"],
        json!({
            "customers": ["Ada", "Cy"],
            "mean_order": 11.916667,
            "totals": "EUR 42.90",
            "invoice_sha256": digest,
            "totals_sha256": sha256_hex(&totals),
            "top_words": ["and", "ordered"]
        })
    );

    // The error path in every language: a refused input fails the step once
    // with the guest's own message; a retryable error is retried.
    let (status, body) = server.apply("failures", &failures_workflow()).await;
    assert_eq!(status, 201, "{body}");
    let id = server.start_run("failures").await;
    let run = server.wait_run(&id).await;
    for (module, _, message) in REFUSED {
        let id = module.replace('-', "_");
        let refused = step(&run, &format!("{id}_refused"));
        assert_eq!(refused["status"], "failed", "{refused:#}");
        assert_eq!(
            refused["error"],
            json!({"kind": "guest_error", "message": message, "retryable": false}),
            "{module}"
        );
        assert_eq!(
            refused["attempts"].as_array().unwrap().len(),
            1,
            "{module}: not retryable, so not retried"
        );

        let busy = step(&run, &format!("{id}_busy"));
        assert_eq!(busy["status"], "failed", "{busy:#}");
        let attempts = busy["attempts"].as_array().unwrap();
        assert_eq!(
            attempts.len(),
            3,
            "{module}: retryable, so retried up to max_attempts: {busy:#}"
        );
        for attempt in attempts {
            assert_eq!(
                attempt["error"],
                json!({"kind": "guest_error", "message": format!("{module} upstream busy"), "retryable": true}),
                "{module}"
            );
        }
    }
    server.stop().await;
}

/// A Python component built with componentize-py's defaults imports
/// sockets: the upload is refused, naming those imports and the flag that
/// leaves them out, and nothing is stored. A JavaScript one built with
/// componentize-js's defaults imports wasi:http: it is stored, and its
/// step fails `capability_denied` unless granted hosts.
#[tokio::test(flavor = "multi_thread")]
async fn default_builds_importing_sockets_are_refused_and_http_needs_a_grant() {
    let (js, py) = crate::support::default_builds();

    let server = TestServer::start().await;
    let (status, body) = server.push("default-js", js).await;
    assert_eq!(status, 201, "{body}");
    let yaml = "name: js-default\nsteps:\n  - id: f\n    module: default-js\n    input: { orders: [] }\n";
    assert_eq!(server.apply("js-default", yaml).await.0, 201);
    let id = server.start_run("js-default").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = &run["steps"][0]["error"];
    assert_eq!(error["kind"], "capability_denied", "{run}");
    assert!(error["message"].as_str().unwrap().contains("wasi:http/"), "{error}");
    for (name, path, imports, hint) in [(
        "default-py",
        py,
        &["wasi:sockets/tcp@", "wasi:sockets/ip-name-lookup@"][..],
        "componentize-py: `--stub-wasi`",
    )] {
        let (status, problem) = server.push(name, path).await;
        assert_eq!(status, 422, "{name}: {problem}");
        assert_eq!(crate::support::server::problem(&problem), "invalid-module");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("module imports what the sandbox does not provide: "),
            "{detail}"
        );
        for import in imports {
            assert!(detail.contains(import), "{name} should name {import}: {detail}");
        }
        assert!(detail.contains(hint), "{detail}");
        let (status, _) = server.get(&format!("/v1/modules/{name}")).await;
        assert_eq!(status, 404, "{name} was stored");
    }
    server.stop().await;
}
