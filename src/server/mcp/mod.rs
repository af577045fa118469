//! `POST /mcp`: the Model Context Protocol (Streamable HTTP, through the
//! `rmcp` SDK), behind the same bearer tokens as `/v1`. Each workflow whose
//! definition says `mcp:` is a tool that starts a run and answers its
//! output; Sandstep's own tools follow runs, post events and list runs.
//!
//! A call waits for its run up to `--mcp-wait`; a run still going is
//! answered with its id, and the run goes on (it is durable: the agent
//! follows it with `sandstep_get_run`, across restarts). A client that
//! declares the tasks extension gets a task at once instead, whose id is
//! the run's: `tasks/get` reads the run, on any node, after any restart. Clients that
//! subscribe (`subscriptions/listen`, or a session's stream on older
//! protocol versions) are told `notifications/tools/list_changed` each time
//! a workflow version is stored.

mod calls;
mod tasks;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::service::Service;

/// How often a session of an older protocol version is checked for having
/// closed, when no workflow changed meanwhile.
const SESSION_CHECK: Duration = Duration::from_secs(30);

/// The MCP server of one node: its tools are the service's workflows.
#[derive(Clone)]
pub struct Tools {
    service: Arc<Service>,
    /// How long a tool call waits for its run (`--mcp-wait`).
    wait: Duration,
}

/// The `/mcp` endpoint. Without API tokens the server listens on loopback
/// only, and requests must name a loopback host (DNS rebinding cannot
/// reach it from a browser); with tokens, every host is taken, the token
/// being the authentication.
pub fn service(
    service: Arc<Service>,
    wait: Duration,
    max_body_bytes: usize,
    tokens: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> StreamableHttpService<Tools, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(max_body_bytes)
        .with_cancellation_token(shutdown);
    if tokens {
        config = config.disable_allowed_hosts();
    }
    let tools = Tools { service, wait };
    StreamableHttpService::new(move || Ok(tools.clone()), Default::default(), config)
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("sandstep", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Each workflow tool starts a durable Sandstep run and answers its output. A run that \
             takes longer than the server waits is answered with its run_id: follow it with \
             sandstep_get_run. A run waiting for an event resumes when sandstep_send_event posts \
             its topic.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.list().await?))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            tools::GET_RUN => self.get_run(arguments, &context).await?,
            tools::SEND_EVENT => self.send_event(arguments).await?,
            tools::LIST_RUNS => self.list_runs(arguments).await?,
            name => match self.call_workflow(name, arguments, &context).await? {
                calls::Called::Now(result) => result,
                calls::Called::Task(task) => return Ok(CallToolResponse::Task(task)),
            },
        };
        Ok(result.into())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.task(&request.task_id, &context).await.map(GetTaskResult::new)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.cancel(&request.task_id).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let message = format!(
            "task {} asks for no input: a run waiting for an event resumes through {}",
            request.task_id,
            tools::SEND_EVENT
        );
        Err(ErrorData::invalid_params(message, None))
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    /// `subscriptions/listen` (protocol 2026-07-28): a notification per
    /// stored workflow version until the client closes the stream.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.service.workflow_changes();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A session of an older protocol version hears of changes on its
    /// standing stream, for as long as the session lasts.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut changes = self.service.workflow_changes();
        let peer = context.peer;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() || peer.notify_tool_list_changed().await.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(SESSION_CHECK) => {
                        if peer.is_transport_closed() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

impl Tools {
    /// The workflows that say `mcp:` (their latest versions), then the
    /// built-in tools.
    async fn list(&self) -> Result<Vec<rmcp::model::Tool>, ErrorData> {
        let mut listed = Vec::new();
        for version in self.service.list_workflows().await.map_err(internal)? {
            // A stored version that no longer validates is not offered.
            let Ok((_, workflow)) = self.service.workflow(&version.name, Some(version.version)).await else {
                continue;
            };
            if let Some(tool) = &workflow.mcp {
                listed.push(tools::workflow_tool(&workflow, tool));
            }
        }
        listed.extend(tools::builtin_tools());
        Ok(listed)
    }
}

/// An error of the server itself, logged and answered without detail.
fn internal(error: impl std::fmt::Display) -> ErrorData {
    tracing::error!(%error, "mcp: internal error");
    ErrorData::internal_error("an internal error occurred", None)
}
