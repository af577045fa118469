//! MCP tasks through the MCP SDK's Rust client (`rmcp`), which declares
//! the tasks extension (the Python SDK's client does not): a call is a task
//! whose id is its durable run's, polled across a restart of the server.

use std::time::Duration;

use serde_json::json;

use crate::mcp::{server_in, BROKEN, SLOW, TOKEN};
use crate::support::server::TestServer;

/// A client of the MCP SDK for Rust (`rmcp`) that declares the tasks
/// extension, with the bearer token.
async fn tasks_client(
    server: &TestServer,
) -> rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig> {
    use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::ServiceExt as _;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.url)).auth_header(TOKEN),
    );
    ClientConfig::new(
        ClientCapabilities::builder().enable_tasks().build(),
        Implementation::new("sandstep-tests", "1"),
    )
    .serve(transport)
    .await
    .expect("the client connects")
}

/// Calls `tool` and answers the task it created.
async fn task_of(
    client: &rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>,
    tool: &str,
) -> rmcp::model::Task {
    use rmcp::model::{CallToolRequestParams, CallToolResponse};
    match client
        .call_tool_once(CallToolRequestParams::new(tool.to_string()))
        .await
        .unwrap()
    {
        CallToolResponse::Task(created) => created.task,
        other => panic!("expected a task, got {other:?}"),
    }
}

/// Polls `tasks/get` until the task has ended.
async fn ended(
    client: &rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>,
    id: &str,
) -> rmcp::model::DetailedTask {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let task = client
            .get_task(rmcp::model::GetTaskParams::new(id.to_string()))
            .await
            .unwrap()
            .task;
        if task.status().is_terminal() {
            return task;
        }
        assert!(std::time::Instant::now() < deadline, "task {id} did not end: {task:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client that supports MCP tasks gets a task at once, whose id is the
/// run's: it is polled across a restart of the server, ends with the tool
/// result a call would answer, and can be cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_the_durable_run_and_outlives_a_restart() {
    use rmcp::model::{CancelTaskParams, GetTaskParams, TaskPayload, TaskStatus};
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path()).await;
    server.push_test_modules().await;
    for (name, yaml) in [("slow", SLOW), ("broken", BROKEN)] {
        assert_eq!(server.apply(name, yaml).await.0, 201);
    }
    let client = tasks_client(&server).await;
    let slow = task_of(&client, "slow").await;
    assert_eq!(slow.status, TaskStatus::Working);
    assert_eq!(slow.poll_interval_ms, Some(1000));
    let (status, run) = server.get(&format!("/v1/runs/{}", slow.task_id)).await;
    assert_eq!(status, 200, "the task id is the run id: {run}");
    assert_eq!(run["trigger"], json!({ "mcp": "slow" }));
    let _ = client.cancel().await;

    server.stop().await;
    let server = server_in(dir.path()).await;
    let client = tasks_client(&server).await;
    let done = ended(&client, &slow.task_id).await;
    let TaskPayload::Completed { result } = &done.payload else {
        panic!("expected a completed task: {done:?}");
    };
    assert_eq!(result["structuredContent"], json!({ "slept": true }), "{result:?}");
    assert_eq!(result["isError"], false);

    let broken = task_of(&client, "broken").await;
    let done = ended(&client, &broken.task_id).await;
    let TaskPayload::Completed { result } = &done.payload else {
        panic!("a failed run is a completed task with an error result: {done:?}");
    };
    assert_eq!(result["isError"], true, "{result:?}");
    assert_eq!(result["structuredContent"]["error"]["kind"], "guest_error");

    let canceled = task_of(&client, "slow").await;
    client
        .cancel_task(CancelTaskParams::new(canceled.task_id.clone()))
        .await
        .unwrap();
    assert_eq!(ended(&client, &canceled.task_id).await.status(), TaskStatus::Cancelled);
    assert_eq!(server.wait_run(&canceled.task_id).await["status"], "canceled");

    let unknown = client
        .get_task(GetTaskParams::new("0190aaaa-0000-7000-8000-000000000000".to_string()))
        .await;
    assert!(
        format!("{unknown:?}").contains("unknown task: 0190aaaa-0000-7000-8000-000000000000"),
        "{unknown:?}"
    );
    let _ = client.cancel().await;
    server.stop().await;
}
