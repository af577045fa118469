//! The secrets store: sealed at rest under SANDSTEP_SECRETS_KEY, used by
//! templates, never answered by any route, redacted from what runs record.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::server::{answer, problem, TestServer};

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const VALUE: &str = "tok-3vQ9 \"quoted\"/ünï";

fn with_key(config: &mut sandstep::server::ServerConfig) {
    config.secrets_key = Some(sandstep::service::secrets::SecretsKey::from_hex(KEY).unwrap());
}

/// A run's whole event stream, as text.
async fn events_text(server: &TestServer, id: &str) -> String {
    let response = server
        .request(Method::GET, &format!("/v1/runs/{id}/events"))
        .send()
        .await;
    response.unwrap().text().await.unwrap()
}

async fn put(server: &TestServer, name: &str, value: &str) -> (u16, Value) {
    answer(
        server
            .request(Method::PUT, &format!("/v1/secrets/{name}"))
            .json(&json!({ "value": value })),
    )
    .await
}

const WORKFLOW: &str = r#"
name: uses-secret
secrets: [API_TOKEN]
steps:
  - id: call
    module: echo
    input: { header: "Bearer {{ secrets.API_TOKEN }}", url: "https://x/?k={{ secrets.API_TOKEN | urlencode }}" }
output: "{{ steps.call.output }}"
"#;

#[tokio::test]
async fn without_a_key_nothing_is_stored_and_the_answer_names_the_key() {
    let server = TestServer::start().await;
    let (status, body) = put(&server, "API_TOKEN", VALUE).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(problem(&body), "not-configured");
    assert!(
        body["detail"].as_str().unwrap().contains("SANDSTEP_SECRETS_KEY"),
        "{body}"
    );
    let (status, list) = server.get("/v1/secrets").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({ "secrets": [] }));
    server.stop().await;
}

#[tokio::test]
async fn a_stored_secret_reaches_templates_sealed_and_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), with_key).await;
    server.push_test_modules().await;
    let (status, body) = put(&server, "API_TOKEN", VALUE).await;
    assert_eq!(status, 204, "{body}");
    let (status, list) = server.get("/v1/secrets").await;
    assert_eq!(status, 200);
    let entries = list["secrets"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["name"], "API_TOKEN");
    assert!(entries[0]["updated_ms"].as_i64().unwrap() > 0);
    assert!(!list.to_string().contains("tok-3vQ9"), "{list}");

    let (status, body) = server.apply("uses-secret", WORKFLOW).await;
    assert_eq!(status, 201, "{body}");
    let id = server.start_run("uses-secret").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["output"],
        json!({ "header": "Bearer [redacted]", "url": "https://x/?k=[redacted]" }),
        "the step saw the value and the run shows it redacted"
    );
    assert_eq!(
        run["steps"][0]["attempts"][0]["input"],
        json!({ "header": "Bearer [redacted]", "url": "https://x/?k=[redacted]" }),
        "the attempt's rendered input, redacted"
    );
    let events = events_text(&server, &id).await;
    for leak in ["tok-3vQ9", "tok-3vQ9%20"] {
        assert!(!events.contains(leak), "{events}");
        assert!(!run.to_string().contains(leak));
    }
    server.stop().await;

    // At rest: not in the database file or its log in any readable form.
    for file in ["sandstep.db", "sandstep.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            assert!(
                !bytes.windows(8).any(|w| w == b"tok-3vQ9"),
                "{file} holds the value in clear"
            );
        }
    }

    // Restarted with the same key: the secret is still there for new runs.
    let server = TestServer::start_in(dir.path(), with_key).await;
    let id = server.start_run("uses-secret").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["output"]["header"], "Bearer [redacted]", "{run}");

    let (status, _) = answer(server.request(Method::DELETE, "/v1/secrets/API_TOKEN")).await;
    assert_eq!(status, 204);
    let (status, body) = answer(server.request(Method::DELETE, "/v1/secrets/API_TOKEN")).await;
    assert_eq!((status, problem(&body)), (404, "not-found"), "{body}");
    assert_eq!(server.get("/v1/secrets").await.1, json!({ "secrets": [] }));
    server.stop().await;
}

#[tokio::test]
async fn the_wrong_key_refuses_to_start_rather_than_run_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), with_key).await;
    assert_eq!(put(&server, "API_TOKEN", VALUE).await.0, 204);
    server.stop().await;
    let mut config = sandstep::server::ServerConfig::new(dir.path().to_path_buf());
    config.store = crate::support::store::location(dir.path());
    config.secrets_key = Some(sandstep::service::secrets::SecretsKey::from_hex(&"ab".repeat(32)).unwrap());
    let error = sandstep::server::start(&config)
        .await
        .err()
        .expect("the wrong key is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("SANDSTEP_SECRETS_KEY does not open the stored secret API_TOKEN"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_names_and_values_are_refused_naming_the_field() {
    let server = TestServer::start_with(with_key).await;
    let (status, body) = put(&server, "1BAD", "x").await;
    assert_eq!((status, problem(&body)), (422, "invalid-name"), "{body}");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("letters, digits or underscores"));
    let (status, body) = put(&server, "GOOD", "").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "value");
    let (status, body) = answer(
        server
            .request(Method::PUT, "/v1/secrets/GOOD")
            .json(&json!({ "value": "x", "extra": 1 })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    server.stop().await;
}

/// `sandstep secret set|list|delete` against a server: the value from
/// stdin, never printed; a malformed key stops `serve` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_lists_and_deletes_secrets_without_printing_values() {
    use std::io::Write as _;
    use std::process::Stdio;

    let keyed = TestServer::start_with(with_key).await;
    let bare = TestServer::start().await;
    let (keyed_url, bare_url) = (keyed.url.clone(), bare.url.clone());
    tokio::task::spawn_blocking(move || {
        let run = |url: &str, args: &[&str], stdin: Option<&str>| {
            let mut child = crate::support::process::command()
                .args(args)
                .env("SANDSTEP_URL", url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
            drop(input);
            child.wait_with_output().unwrap()
        };
        let set = run(&keyed_url, &["secret", "set", "SMTP_KEY"], Some("s3cr3t-value\n"));
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
        let listed = run(&keyed_url, &["secret", "list"], None);
        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        let list: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(list["secrets"][0]["name"], "SMTP_KEY", "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        let deleted = run(&keyed_url, &["secret", "delete", "SMTP_KEY"], None);
        assert!(deleted.status.success());
        let listed = run(&keyed_url, &["secret", "list"], None);
        assert_eq!(
            serde_json::from_slice::<Value>(&listed.stdout).unwrap(),
            json!({ "secrets": [] })
        );

        let refused = run(&bare_url, &["secret", "set", "SMTP_KEY"], Some("v"));
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("503") && stderr.contains("SANDSTEP_SECRETS_KEY"),
            "{stderr}"
        );
        let empty = run(&keyed_url, &["secret", "set", "SMTP_KEY"], Some(""));
        assert!(String::from_utf8_lossy(&empty.stderr).contains("no value on stdin"));

        let dir = tempfile::tempdir().unwrap();
        let serve = crate::support::process::command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("SANDSTEP_SECRETS_KEY", "abc")
            .output()
            .unwrap();
        assert!(!serve.status.success());
        assert!(
            String::from_utf8_lossy(&serve.stderr)
                .contains("SANDSTEP_SECRETS_KEY must be 32 random bytes as 64 hex characters"),
            "{}",
            String::from_utf8_lossy(&serve.stderr)
        );
    })
    .await
    .unwrap();
    keyed.stop().await;
    bare.stop().await;
}

/// A guest that logs, prints and returns a stored secret (raw and
/// URL-encoded): every record shows `[redacted]`.
#[tokio::test]
async fn a_guest_logging_and_returning_a_secret_shows_it_redacted() {
    let server = TestServer::start_with(with_key).await;
    server.push_test_modules().await;
    assert_eq!(put(&server, "API_TOKEN", VALUE).await.0, 204);
    let yaml = r#"
name: leaky
steps:
  - id: say
    module: hostile
    input: { mode: say, text: "k={{ secrets.API_TOKEN }} u={{ secrets.API_TOKEN | urlencode }}" }
output: "{{ steps.say.output }}"
"#;
    assert_eq!(server.apply("leaky", yaml).await.0, 201);
    let id = server.start_run("leaky").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["output"], json!({ "said": "k=[redacted] u=[redacted]" }), "{run}");
    let logs: Vec<&str> = run["steps"][0]["attempts"][0]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs,
        ["k=[redacted] u=[redacted]", "k=[redacted] u=[redacted]"],
        "{run}"
    );
    let events = events_text(&server, &id).await;
    for shown in [run.to_string(), events] {
        assert!(!shown.contains("tok-3vQ9"), "{shown}");
        assert!(!shown.contains("tok-3vQ9%20"), "{shown}");
    }
    server.stop().await;
}
