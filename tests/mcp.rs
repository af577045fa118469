//! MCP at `/mcp`, through the official MCP Python SDK (`mcp` on PyPI) over
//! Streamable HTTP: workflows that say `mcp:` are tools with schemas from
//! their inputs; a call answers a completed run's output, a failed run as
//! `isError`, a run that outlasts `--mcp-wait` by its id (followed with
//! `sandstep_get_run`, also after a restart), and a run waiting for an event
//! resumes through `sandstep_send_event`; applying a workflow tells
//! listening clients the tools changed; no token, no MCP.

use std::io::BufRead as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::server::TestServer;
use crate::support::{python, root, text};

pub(crate) const TOKEN: &str = "mcp-test-token-0123456789";
/// A token whose runs may consume 1 fuel a day: its first run spends it.
const TINY: &str = "tiny-budget-token-0123456789";

const GREET: &str = r#"
name: greet
description: Greets someone by name.
mcp: true
inputs:
  name: { type: string, required: true, description: Who to greet }
  excited: { type: boolean, default: false }
steps:
  - id: say
    module: echo
    input: { greeting: "hello {{ inputs.name }}", excited: "{{ inputs.excited }}" }
output: "{{ steps.say.output }}"
"#;

pub(crate) const BROKEN: &str = r#"
name: broken
mcp: { description: Always fails. }
steps:
  - id: no
    module: hostile
    input: { mode: error, retryable: false }
"#;

pub(crate) const SLOW: &str = r#"
name: slow
mcp: true
steps:
  - id: nap
    sleep: 4s
  - id: done
    needs: [nap]
    module: echo
    input: { slept: true }
output: "{{ steps.done.output }}"
"#;

const APPROVAL: &str = r#"
name: approval
mcp: true
inputs:
  ticket: { type: string, required: true }
steps:
  - id: approve
    wait: { event: "approval.{{ inputs.ticket }}", timeout: 1h }
output: { by: "{{ steps.approve.output.by }}" }
"#;

const HIDDEN: &str = r#"
name: hidden
steps:
  - { id: e, module: echo, input: { secret: true } }
"#;

pub(crate) async fn server_in(dir: &std::path::Path) -> TestServer {
    TestServer::start_in(dir, |config| {
        config.tokens = vec![
            sandstep::server::auth::ApiToken::new(TOKEN),
            sandstep::server::auth::ApiToken::parse(&format!("tiny:{TINY}:1")).unwrap(),
        ];
        config.mcp_wait = Duration::from_secs(2);
    })
    .await
}

fn mcp_python() -> std::path::PathBuf {
    python("tests/mcp/requirements.txt")
}

/// Runs `ops` in one MCP session of the Python SDK (`mode`: `auto`, the
/// current protocol, or `legacy`, the initialize handshake); one answer per op.
async fn session(server: &TestServer, mode: &str, ops: Value) -> Vec<Value> {
    session_as(server, TOKEN, mode, ops).await
}

/// [`session`] with `token`.
async fn session_as(server: &TestServer, token: &str, mode: &str, ops: Value) -> Vec<Value> {
    let mut command = std::process::Command::new(mcp_python());
    command.arg(root().join("tests/mcp/client.py")).args([
        &format!("{}/mcp", server.url),
        token,
        &ops.to_string(),
        mode,
    ]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "the MCP client failed:\n{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn call(name: &str, arguments: Value) -> Value {
    json!({ "op": "call", "name": name, "arguments": arguments })
}

fn run_id(answer: &Value) -> String {
    answer["structuredContent"]["run_id"]
        .as_str()
        .or_else(|| answer["meta"]["sandstep.dev/run_id"].as_str())
        .unwrap_or_else(|| panic!("no run id: {answer}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lists_calls_follows_and_resumes_workflows_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path()).await;
    server.push_test_modules().await;
    for (name, yaml) in [
        ("greet", GREET),
        ("broken", BROKEN),
        ("slow", SLOW),
        ("approval", APPROVAL),
        ("hidden", HIDDEN),
    ] {
        let (status, body) = server.apply(name, yaml).await;
        assert_eq!(status, 201, "{name}: {body}");
    }
    let answers = session(
        &server,
        "auto",
        json!([
            { "op": "list" },
            call("greet", json!({ "name": "Ada" })),
            call("broken", json!({})),
            call("slow", json!({})),
            call("approval", json!({ "ticket": "T-9" })),
            call("greet", json!({ "nom": "Ada" })),
            call("hidden", json!({})),
        ]),
    )
    .await;
    assert_tools(&answers[0]);
    let (greet_run, slow_run, approval_run) = assert_calls(&server, &answers[1..]).await;

    // The server restarts; the runs go on, and the agent follows them (a
    // client of an older protocol version, with a session, this time).
    server.stop().await;
    let server = server_in(dir.path()).await;
    let answers = session(
        &server,
        "legacy",
        json!([
            { "op": "protocol" },
            call("sandstep_get_run", json!({ "run_id": slow_run, "wait_seconds": 10 })),
            call(
                "sandstep_send_event",
                json!({ "topic": "approval.T-9", "data": { "by": "ada" }, "idempotency_key": "t9" })
            ),
            call(
                "sandstep_get_run",
                json!({ "run_id": approval_run, "wait_seconds": 10 })
            ),
            call(
                "sandstep_list_runs",
                json!({ "workflow": "greet", "status": "completed" })
            ),
            call(
                "sandstep_get_run",
                json!({ "run_id": "0190aaaa-0000-7000-8000-000000000000" })
            ),
            call("sandstep_list_runs", json!({ "status": "finished" })),
            call("sandstep_get_run", json!({ "run_id": slow_run, "wait_seconds": 1e300 })),
            call("sandstep_get_run", json!({ "run_id": slow_run, "wait_seconds": -1 })),
        ]),
    )
    .await;
    assert_ne!(answers[0]["protocol"], "2026-07-28", "{}", answers[0]);
    assert_eq!(answers[1]["isError"], false, "{}", answers[1]);
    assert_eq!(
        answers[1]["structuredContent"],
        json!({ "slept": true }),
        "{}",
        answers[1]
    );
    assert_eq!(answers[2]["structuredContent"]["created"], true, "{}", answers[2]);
    assert_eq!(answers[2]["structuredContent"]["resumed"], json!([approval_run]));
    assert_eq!(
        answers[3]["structuredContent"],
        json!({ "by": "ada" }),
        "{}",
        answers[3]
    );
    let listed = answers[4]["structuredContent"]["runs"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", answers[4]);
    assert_eq!(listed[0]["run_id"], greet_run);
    assert_eq!(answers[5]["isError"], true, "{}", answers[5]);
    assert_eq!(
        answers[5]["structuredContent"]["error"]["type"],
        "https://sandstep.dev/problems/not-found"
    );
    assert_eq!(answers[6]["error"]["code"], -32602, "{}", answers[6]);
    // A wait too long for any clock is capped at --mcp-wait; a negative one refused.
    assert_eq!(
        answers[7]["structuredContent"],
        json!({ "slept": true }),
        "{}",
        answers[7]
    );
    assert_eq!(answers[8]["error"]["code"], -32602, "{}", answers[8]);
    assert!(
        answers[8]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wait_seconds"),
        "{}",
        answers[8]
    );
    server.stop().await;
}

/// The current protocol; tools/list: the four workflows that say mcp:,
/// then the built-ins, with their schemas and descriptions.
fn assert_tools(list: &Value) {
    assert_eq!(list["protocol"], "2026-07-28");
    let tools = list["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "approval",
            "broken",
            "greet",
            "slow",
            "sandstep_get_run",
            "sandstep_send_event",
            "sandstep_list_runs"
        ],
        "{list}"
    );
    let greet = &tools[2];
    assert_eq!(greet["description"], "Greets someone by name.");
    assert_eq!(
        greet["inputSchema"],
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "Who to greet" },
                "excited": { "type": "boolean", "default": false }
            },
            "required": ["name"],
            "additionalProperties": false
        })
    );
    assert_eq!(tools[1]["description"], "Always fails.");
    assert_eq!(tools[3]["inputSchema"], json!({ "type": "object", "properties": {} }));
}

/// The first session's calls: completed, failed, outlasting the wait,
/// waiting for an event, refused input, a workflow that is not a tool.
/// Answers the ids of the greet, slow and approval runs.
async fn assert_calls(server: &TestServer, answers: &[Value]) -> (String, String, String) {
    // A run that completes: its output, structured and as text; each step's
    // start and end was a progress notification.
    let completed = &answers[0];
    assert_eq!(completed["isError"], false, "{completed}");
    assert_eq!(
        completed["structuredContent"],
        json!({ "greeting": "hello Ada", "excited": false })
    );
    let output: Value = serde_json::from_str(completed["text"][0].as_str().unwrap()).unwrap();
    assert_eq!(output, completed["structuredContent"]);
    assert_eq!(completed["meta"]["sandstep.dev/status"], "completed");
    assert_eq!(
        completed["progress"],
        json!(["step say started (attempt 1)", "step say succeeded"]),
        "{completed}"
    );
    let greet_run = completed["meta"]["sandstep.dev/run_id"].as_str().unwrap().to_string();
    let (status, run) = server.get(&format!("/v1/runs/{greet_run}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["trigger"], json!({ "mcp": "greet" }), "{run}");

    // A run that fails: isError with the step's error kind and message.
    let failed = &answers[1];
    assert_eq!(failed["isError"], true, "{failed}");
    assert_eq!(failed["structuredContent"]["status"], "failed");
    assert_eq!(failed["structuredContent"]["error"]["kind"], "guest_error");
    assert_eq!(failed["structuredContent"]["error"]["step"], "no");
    assert!(
        failed["text"][0].as_str().unwrap().contains("the guest says no"),
        "{failed}"
    );

    // A run that outlasts --mcp-wait (2s here; it sleeps 4s): its id,
    // status and page.
    let slow = &answers[2];
    assert_eq!(slow["isError"], false, "{slow}");
    let status = slow["structuredContent"]["status"].as_str().unwrap();
    assert!(["queued", "running", "paused"].contains(&status), "{slow}");
    let slow_run = run_id(slow);
    assert_eq!(
        slow["structuredContent"]["ui"],
        format!("{}/ui/#/runs/{slow_run}", server.url)
    );
    assert!(slow["text"][0].as_str().unwrap().contains("sandstep_get_run"), "{slow}");

    // A run that waits for an event is answered once it pauses (the event
    // may be the agent's to send), saying which topic.
    let waiting = &answers[3];
    assert_eq!(waiting["structuredContent"]["status"], "paused", "{waiting}");
    assert_eq!(waiting["structuredContent"]["waiting_for"], json!(["approval.T-9"]));
    assert_eq!(
        waiting["progress"],
        json!(["step approve waiting for event approval.T-9"])
    );
    let approval_run = run_id(waiting);

    // Input the workflow does not declare: a tool error the model can act on.
    let refused = &answers[4];
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(
        refused["structuredContent"]["error"]["type"],
        "https://sandstep.dev/problems/invalid-input"
    );
    assert!(
        refused["text"][0].as_str().unwrap().contains("unknown input nom"),
        "{refused}"
    );

    // A workflow without mcp: cannot be called.
    assert_eq!(answers[5]["error"]["code"], -32602, "{}", answers[5]);
    assert!(answers[5]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown tool: hidden"));
    let (_, hidden_runs) = server.get("/v1/runs?workflow=hidden").await;
    assert_eq!(hidden_runs["runs"], json!([]));
    (greet_run, slow_run, approval_run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_agent_hears_that_the_tools_changed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path()).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("greet", GREET).await.0, 201);
    hears_the_change(&server, &server).await;
    server.stop().await;
}

/// On PostgreSQL, a client listening on one node hears of a workflow
/// applied through another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_applied_on_another_node_changes_the_tools() {
    if crate::support::store::postgres().is_none() {
        eprintln!("skipped: several nodes share a store on PostgreSQL only (SANDSTEP_TEST_POSTGRES)");
        return;
    }
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = server_in(first_dir.path()).await;
    first.push_test_modules().await;
    let shared = crate::support::store::location(first_dir.path());
    let second = TestServer::start_in(second_dir.path(), |config| {
        config.tokens = vec![sandstep::server::auth::ApiToken::new(TOKEN)];
        config.store = shared;
    })
    .await;
    hears_the_change(&first, &second).await;
    second.stop().await;
    first.stop().await;
}

/// A Python SDK client listens on `listening`'s `/mcp` while `approval` is
/// applied through `applying`: it hears `tools/list_changed` and lists the
/// new tool.
async fn hears_the_change(listening: &TestServer, applying: &TestServer) {
    let mut child = std::process::Command::new(mcp_python())
        .arg(root().join("tests/mcp/client.py"))
        .args([&format!("{}/mcp", listening.url), TOKEN, r#"[{"op": "listen"}]"#])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    assert_eq!(next(&mut lines).await, json!({ "listening": true }));
    assert_eq!(applying.apply("approval", APPROVAL).await.0, 201);
    let changed = next(&mut lines).await;
    assert_eq!(changed["changed"], true);
    assert!(
        changed["tools"].as_array().unwrap().contains(&json!("approval")),
        "{changed}"
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The next line the client printed, as JSON.
async fn next(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.recv())
        .await
        .unwrap();
    serde_json::from_str(&line.expect("the client printed a line")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_needs_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path()).await;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "curl", "version": "1" } }
    });
    let post = |token: Option<&str>| {
        let mut request = server
            .http
            .post(format!("{}/mcp", server.url))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("not-the-token-0123456789")).await.unwrap().status(), 401);
    assert_eq!(post(Some(TOKEN)).await.unwrap().status(), 200);

    // The SDK's client without the token does not get in (it reports the
    // 401 as an error response to its first request).
    let mut command = std::process::Command::new(mcp_python());
    command
        .arg(root().join("tests/mcp/client.py"))
        .args([&format!("{}/mcp", server.url), "", r#"[{"op": "list"}]"#]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr).trim(),
        "client error: MCPError: Server returned an error response"
    );
    server.stop().await;
}

/// The token's daily fuel budget applies to the runs its calls start: the
/// first run may consume what is left of it (1 fuel: its step runs out),
/// and once it is spent a call is a tool error saying so, and no run starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_runs_count_against_its_tokens_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path()).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("greet", GREET).await.0, 201);
    let ops = json!([
        call("greet", json!({ "name": "a" })),
        call("greet", json!({ "name": "b" }))
    ]);
    let answers = session_as(&server, TINY, "auto", ops).await;
    assert_eq!(answers[0]["isError"], true, "{}", answers[0]);
    assert_eq!(answers[0]["structuredContent"]["error"]["kind"], "budget_exhausted");
    assert_eq!(answers[1]["isError"], true, "{}", answers[1]);
    assert_eq!(
        answers[1]["structuredContent"]["error"]["type"],
        "https://sandstep.dev/problems/budget-exhausted"
    );
    let (_, runs) = server.get("/v1/runs?workflow=greet").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    server.stop().await;
}

/// Without tokens the server listens on loopback only, and `/mcp` takes
/// only a loopback `Host`: a page that rebinds its own name to 127.0.0.1
/// cannot call the tools from a browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_mcp_takes_loopback_hosts_only() {
    let server = TestServer::start().await;
    let post = |host: Option<&str>| {
        let mut request = server
            .http
            .post(format!("{}/mcp", server.url))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }
            }));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 200);
    assert_eq!(post(Some("localhost:8080")).await.unwrap().status(), 200);
    assert_eq!(post(Some("rebound.example:8080")).await.unwrap().status(), 403);
    server.stop().await;
}
