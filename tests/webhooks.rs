//! Webhooks: `POST /hooks/{name}` signed as GitHub (its documented test
//! vector), Stripe (headers made by the official `stripe` package) and a
//! generic HMAC-SHA256 (Python's own `hmac`) sign them; refusals store
//! nothing and are counted; a redelivery is one run; a hook can post an
//! event that resumes a waiting run; unsigned hooks need the server flag.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::server::{answer, problem, TestServer};
use crate::support::{process, root, text};

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// GitHub's documented test vector: this secret, body `Hello, World!`.
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const STRIPE_SECRET: &str = "whsec_test_5VQ0dmPp2a";

/// A server with a secrets key and `secrets` set; `max_body` is its
/// `--max-body-size` (default 1 MiB).
async fn server_with(secrets: &[(&str, &str)], unsigned: bool, max_body: Option<usize>) -> TestServer {
    let server = TestServer::start_with(|config| {
        config.secrets_key = Some(sandstep::service::secrets::SecretsKey::from_hex(KEY).unwrap());
        config.grants.unsigned_webhooks = unsigned;
        if let Some(max) = max_body {
            config.max_body_bytes = max;
        }
    })
    .await;
    server.push_test_modules().await;
    for (name, value) in secrets {
        let (status, body) = answer(
            server
                .request(Method::PUT, &format!("/v1/secrets/{name}"))
                .json(&json!({ "value": value })),
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    server
}

/// POSTs `body` to `/hooks/{hook}` with `headers` and no bearer token.
async fn deliver(
    server: &TestServer,
    hook: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = server.http.post(format!("{}/hooks/{hook}", server.url)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request).await
}

async fn runs_of(server: &TestServer, workflow: &str) -> Vec<Value> {
    let (status, list) = server.get(&format!("/v1/runs?workflow={workflow}")).await;
    assert_eq!(status, 200, "{list}");
    list["runs"].as_array().unwrap().clone()
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn python() -> std::path::PathBuf {
    crate::support::python("tests/webhooks/requirements.txt")
}

/// A `Stripe-Signature` header for `body` at `timestamp`, made (and
/// checked) by the `stripe` package.
fn stripe_header(body: &str, secret: &str, timestamp: i64) -> String {
    use std::io::Write as _;
    let mut child = Command::new(python())
        .arg(root().join("tests/webhooks/stripe_sign.py"))
        .args([secret, &timestamp.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// HMAC-SHA256 of `body` under `secret`, by Python's `hmac` module, as
/// `hex` or `base64`.
fn python_hmac(body: &str, secret: &str, encoding: &str) -> String {
    let script = "import base64, hashlib, hmac, sys\n\
        mac = hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).digest()\n\
        print(mac.hex() if sys.argv[3] == 'hex' else base64.b64encode(mac).decode())\n";
    let out = Command::new(python())
        .args(["-c", script, secret, body, encoding])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn rejected(metrics: &str, hook: &str, reason: &str) -> u64 {
    let line = format!("sandstep_webhook_rejected_total{{hook=\"{hook}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

const GITHUB: &str = r#"
name: on-push
triggers:
  - webhook: github-push
    secret: GH_HOOK
    signature: github
    headers: [X-GitHub-Event]
    input: { event: "{{ request.headers['X-GitHub-Event'] }}", body: "{{ request.body }}" }
steps:
  - id: e
    module: echo
    input: "{{ inputs }}"
output: "{{ steps.e.output }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_deliveries_start_one_run_each_and_bad_signatures_store_nothing() {
    let server = server_with(&[("GH_HOOK", GITHUB_SECRET)], false, Some(16 << 20)).await;
    assert_eq!(server.apply("on-push", GITHUB).await.0, 201);
    let signed = |delivery: &'static str| {
        [
            ("content-type", "text/plain"),
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-delivery", delivery),
            ("x-github-event", "push"),
        ]
    };
    let (status, body) = deliver(&server, "github-push", "Hello, World!", &signed("d-1")).await;
    assert_eq!(status, 202, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();
    let run = server.wait_run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["output"],
        json!({ "event": "push", "body": "Hello, World!" }),
        "{run}"
    );
    assert_eq!(
        run["trigger"],
        json!({ "webhook": "github-push", "delivery": "d-1" }),
        "{run}"
    );
    // GitHub redelivers with the same delivery id: the same run.
    let (status, again) = deliver(&server, "github-push", "Hello, World!", &signed("d-1")).await;
    assert_eq!((status, &again["run_id"]), (202, &json!(run_id)), "{again}");

    // Refused before anything is parsed or stored, each counted.
    let mut wrong = signed("d-2");
    for (body, headers, reason) in [
        ("Hello, World?", signed("d-2").to_vec(), "bad_signature"),
        ("Hello, World!", signed("d-2")[..1].to_vec(), "missing_signature"),
        (
            "Hello, World!",
            {
                wrong[1].1 = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
                wrong.to_vec()
            },
            "bad_signature",
        ),
    ] {
        let (status, refused) = deliver(&server, "github-push", body, &headers).await;
        assert_eq!(status, 401, "{reason}: {refused}");
        assert_eq!(problem(&refused), "bad-signature", "{refused}");
    }
    let metrics = server.metrics().await;
    assert_eq!(rejected(&metrics, "github-push", "bad_signature"), 2, "{metrics}");
    assert_eq!(rejected(&metrics, "github-push", "missing_signature"), 1, "{metrics}");
    assert_eq!(runs_of(&server, "on-push").await.len(), 1);

    // Unknown hooks, media types and sizes.
    let (status, body) = deliver(&server, "nope", "Hello, World!", &signed("d-3")).await;
    assert_eq!((status, problem(&body)), (404, "not-found"), "{body}");
    let mut xml = signed("d-4");
    xml[0].1 = "application/xml";
    let (status, body) = deliver(&server, "github-push", "Hello, World!", &xml).await;
    assert_eq!((status, problem(&body)), (415, "unsupported-media-type"), "{body}");
    // A 10 MB body under `--max-body-size 16MiB`: its signature is checked
    // over all of it (and does not match), nothing is stored.
    let (status, body) = deliver(&server, "github-push", vec![b'x'; 10_000_000], &signed("d-5")).await;
    assert_eq!((status, problem(&body)), (401, "bad-signature"), "{body}");
    assert_eq!(rejected(&server.metrics().await, "github-push", "bad_signature"), 3);
    assert_eq!(runs_of(&server, "on-push").await.len(), 1);

    // The hooks list, over HTTP and from the CLI; never the secret.
    let (status, hooks) = server.get("/v1/hooks").await;
    assert_eq!(status, 200, "{hooks}");
    let hook = &hooks["hooks"][0];
    assert_eq!(
        (&hook["name"], &hook["workflow"], &hook["version"], &hook["signature"]),
        (&json!("github-push"), &json!("on-push"), &json!(1), &json!("github")),
        "{hooks}"
    );
    assert_eq!(hook["last_delivery"]["delivery"], "d-1", "{hooks}");
    assert_eq!(hook["last_delivery"]["run_id"], json!(run_id), "{hooks}");
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        process::command()
            .args(["hooks", "list"])
            .env("SANDSTEP_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, hooks);
    let (_, workflow) = server.get("/v1/workflows/on-push").await;
    assert_eq!(
        workflow["triggers"],
        json!([{ "webhook": "github-push", "signature": "github" }]),
        "{workflow}"
    );
    for shown in [hooks.to_string(), workflow.to_string(), run.to_string(), metrics] {
        assert!(!shown.contains(GITHUB_SECRET), "{shown}");
    }
}

const STRIPE: &str = r#"
name: payments
triggers:
  - webhook: stripe
    secret: STRIPE_HOOK
    signature: stripe
  - webhook: stripe-lenient
    secret: STRIPE_HOOK
    signature: stripe
    tolerance: 20m
steps:
  - id: e
    module: echo
    input: { type: "{{ inputs.type }}", amount: "{{ inputs.data.object.amount }}" }
output: "{{ steps.e.output }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_signatures_made_by_the_stripe_package_are_checked_within_their_tolerance() {
    let server = server_with(&[("STRIPE_HOOK", STRIPE_SECRET)], false, None).await;
    assert_eq!(server.apply("payments", STRIPE).await.0, 201);
    let event = |id: &str| {
        json!({ "id": id, "type": "payment_intent.succeeded", "data": { "object": { "amount": 2000 } } }).to_string()
    };
    let post = |hook: &'static str, body: String, header: String| {
        let server = &server;
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("stripe-signature", header.as_str()),
            ];
            deliver(server, hook, body, &headers).await
        }
    };
    let body = event("evt_1");
    let (status, first) = post("stripe", body.clone(), stripe_header(&body, STRIPE_SECRET, now_s())).await;
    assert_eq!(status, 202, "{first}");
    let run = server.wait_run(first["run_id"].as_str().unwrap()).await;
    assert_eq!(
        run["output"],
        json!({ "type": "payment_intent.succeeded", "amount": 2000 }),
        "{run}"
    );
    assert_eq!(
        run["trigger"],
        json!({ "webhook": "stripe", "delivery": "evt_1" }),
        "{run}"
    );
    // Stripe retries with a new timestamp: the event id makes it one run.
    let (status, retried) = post("stripe", body.clone(), stripe_header(&body, STRIPE_SECRET, now_s() + 1)).await;
    assert_eq!((status, &retried["run_id"]), (202, &first["run_id"]), "{retried}");

    // Ten minutes old: outside the default 5m, inside `tolerance: 20m`.
    let body = event("evt_2");
    let stale = stripe_header(&body, STRIPE_SECRET, now_s() - 600);
    let (status, refused) = post("stripe", body.clone(), stale.clone()).await;
    assert_eq!((status, problem(&refused)), (401, "bad-signature"), "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("tolerance of 300s"),
        "{refused}"
    );
    let (status, lenient) = post("stripe-lenient", body.clone(), stale).await;
    assert_eq!(status, 202, "{lenient}");
    // Another secret, or a body changed after signing.
    let (status, _) = post("stripe", body.clone(), stripe_header(&body, "whsec_other", now_s())).await;
    assert_eq!(status, 401);
    let header = stripe_header(&body, STRIPE_SECRET, now_s());
    let (status, _) = post("stripe", body.replace("2000", "1"), header).await;
    assert_eq!(status, 401);

    // Just over the default 1 MiB: refused before the signature is read
    // (a much larger body would still be in the client's send buffer when
    // the server answers and closes: a broken pipe instead of the 413).
    let big = json!({ "id": "evt_big", "pad": "x".repeat(1 << 20) }).to_string();
    let (status, refused) = post("stripe", big.clone(), stripe_header(&big, STRIPE_SECRET, now_s())).await;
    assert_eq!((status, problem(&refused)), (413, "payload-too-large"), "{refused}");

    let metrics = server.metrics().await;
    assert_eq!(rejected(&metrics, "stripe", "stale_timestamp"), 1, "{metrics}");
    assert_eq!(rejected(&metrics, "stripe", "bad_signature"), 2, "{metrics}");
    assert_eq!(runs_of(&server, "payments").await.len(), 2);
}

const APPROVAL: &str = r#"
name: approval
triggers:
  - webhook: chat-approve
    secret: CHAT_HOOK
    signature: hmac-sha256
    header: X-Signature
    event: chat.approved
steps:
  - id: wait
    wait: { event: chat.approved }
output: "{{ steps.wait.output }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hmac_signed_form_posts_the_event_that_resumes_a_waiting_run() {
    let secret = "chat-secret-7Qx";
    let server = server_with(&[("CHAT_HOOK", secret)], false, None).await;
    assert_eq!(server.apply("approval", APPROVAL).await.0, 201);
    let run_id = server.start_run("approval").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.get(&format!("/v1/runs/{run_id}")).await.1["status"] != "paused" {
        assert!(std::time::Instant::now() < deadline, "the run did not pause");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A base64 signature of a form body; a hex one is taken too.
    let form = "approved=yes&by=ana&tag=a&tag=b";
    let signature = python_hmac(form, secret, "base64");
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-signature", signature.as_str()),
    ];
    let (status, posted) = deliver(&server, "chat-approve", form, &headers).await;
    assert_eq!(status, 202, "{posted}");
    let event_id = posted["event_id"].as_str().unwrap().to_string();
    let run = server.wait_run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["output"],
        json!({ "approved": "yes", "by": "ana", "tag": ["a", "b"] }),
        "{run}"
    );
    // The same body again (no delivery id): the same event.
    let (status, again) = deliver(&server, "chat-approve", form, &headers).await;
    assert_eq!((status, &again["event_id"]), (202, &json!(event_id)), "{again}");
    let hex = python_hmac("\"plain\"", secret, "hex");
    let (status, text_event) = deliver(
        &server,
        "chat-approve",
        "\"plain\"",
        &[("content-type", "application/json"), ("x-signature", &hex)],
    )
    .await;
    assert_eq!(status, 202, "{text_event}");
    assert_ne!(text_event["event_id"], json!(event_id));
    let (_, events) = server.get("/v1/events?topic=chat.approved").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2, "{events}");
    let (_, hooks) = server.get("/v1/hooks").await;
    assert_eq!(hooks["hooks"][0]["event"], "chat.approved", "{hooks}");
    assert_eq!(
        hooks["hooks"][0]["last_delivery"]["event_id"], text_event["event_id"],
        "{hooks}"
    );
}

const UNSIGNED: &str = "name: open\ntriggers:\n  - webhook: open-hook\n    signature: none\nsteps:\n  - id: e\n    module: echo\n    input: \"{{ inputs }}\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_hooks_need_the_server_flag_when_applied_and_when_delivered() {
    let refusing = server_with(&[], false, None).await;
    let (status, body) = refusing.apply("open", UNSIGNED).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["location"], "triggers[0].signature", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("--allow-unsigned-webhooks"),
        "{body}"
    );
    refusing.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let allowing = TestServer::start_in(dir.path(), |config| config.grants.unsigned_webhooks = true).await;
    allowing.push_test_modules().await;
    assert_eq!(allowing.apply("open", UNSIGNED).await.0, 201);
    let (status, body) = deliver(
        &allowing,
        "open-hook",
        r#"{"n": 1}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let run = allowing.wait_run(body["run_id"].as_str().unwrap()).await;
    assert_eq!(run["steps"][0]["output"], json!({ "n": 1 }), "{run}");
    allowing.stop().await;

    // The same store, served without the flag: the stored hook is refused.
    let again = TestServer::start_in(dir.path(), |_| {}).await;
    let (status, body) = deliver(
        &again,
        "open-hook",
        r#"{"n": 2}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!((status, problem(&body)), (401, "bad-signature"), "{body}");
    assert_eq!(rejected(&again.metrics().await, "open-hook", "unsigned_refused"), 1);
    assert_eq!(runs_of(&again, "open").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_name_belongs_to_one_workflow_and_bad_hooks_are_located() {
    let server = server_with(&[("S", "s3cret")], false, None).await;
    let hooked = |name: &str, extra: &str| {
        format!(
            "name: {name}\ntriggers:\n  - webhook: shared\n    secret: S\n    signature: github\n{extra}steps:\n  - id: e\n    module: echo\n    input: {{}}\n"
        )
    };
    assert_eq!(server.apply("first", &hooked("first", "")).await.0, 201);
    let (status, body) = server.apply("second", &hooked("second", "")).await;
    assert_eq!((status, problem(&body)), (409, "conflict"), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"first\"") && detail.contains("\"second\""),
        "{detail}"
    );
    assert_eq!(server.get("/v1/workflows/second").await.0, 404);
    // A new version of `first` without it frees the name.
    let plain = "name: first\nsteps:\n  - id: e\n    module: echo\n    input: {}\n";
    assert_eq!(server.apply("first", plain).await.0, 201);
    let (status, _) = deliver(&server, "shared", "{}", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(server.apply("second", &hooked("second", "")).await.0, 201);

    for (trigger, location, message) in [
        ("    signature: github\n", "triggers[0].secret", "needs `secret`"),
        ("    secret: S\n", "triggers[0].signature", "needs `signature`"),
        (
            "    secret: S\n    signature: gitlab\n",
            "triggers[0].signature",
            "unknown signature \"gitlab\"",
        ),
        (
            "    secret: S\n    signature: hmac-sha256\n",
            "triggers[0].header",
            "needs `header`",
        ),
        (
            "    secret: S\n    signature: github\n    tolerance: 1m\n",
            "triggers[0].tolerance",
            "`signature: stripe` only",
        ),
        (
            "    secret: S\n    signature: github\n    input: { e: \"{{ request.headers.X-Event }}\" }\n",
            "triggers[0].input",
            "",
        ),
        (
            "    secret: S\n    signature: github\n    input: { e: \"{{ request.query }}\" }\n",
            "triggers[0].input",
            "request has only `body` and `headers`",
        ),
        (
            "    secret: S\n    signature: github\n    event: \"a b\"\n",
            "triggers[0].event",
            "",
        ),
    ] {
        let yaml = format!(
            "name: bad\ntriggers:\n  - webhook: bad-hook\n{trigger}steps:\n  - id: e\n    module: echo\n    input: {{}}\n"
        );
        let (status, body) = server.apply("bad", &yaml).await;
        assert_eq!(status, 422, "{trigger}: {body}");
        let error = &body["errors"][0];
        assert_eq!(error["location"], location, "{trigger}: {body}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{trigger}: {body}"
        );
    }
    let schedule_reads_request =
        "name: bad\ntriggers:\n  - on_event: x\n    input: { a: \"{{ request.body }}\" }\nsteps:\n  - id: e\n    module: echo\n    input: {}\n";
    let (status, body) = server.apply("bad", schedule_reads_request).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("only in the input of a webhook trigger"),
        "{body}"
    );
}
