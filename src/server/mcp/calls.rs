//! `tools/call`: a workflow tool starts a run and follows it (each step's
//! start and end a progress notification when the client asked for them)
//! until it ends or `--mcp-wait` is over; the built-in tools read runs and
//! post events. A run's answer is the same whichever tool gives it.

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, MetaObject, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{json, Value};

use super::{internal, tools, Tools};
use crate::run::event::{EventKind, Origin};
use crate::run::RunStatus;
use crate::server::error::ApiError;
use crate::service::start::RunRequest;
use crate::service::view::RunView;
use crate::service::{Caller, RunError};
use crate::store::runs::RunFilter;

/// Runs `sandstep_list_runs` answers unless asked for fewer or more.
const LISTED_RUNS: i64 = 20;
/// Most runs `sandstep_list_runs` answers.
const MAX_LISTED_RUNS: i64 = 100;

impl Tools {
    /// Starts a run of workflow tool `name` with the arguments as its input
    /// and answers it as it stands when it ends or the wait is over.
    pub(super) async fn call_workflow(
        &self,
        name: &str,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<Called, ErrorData> {
        let offered = match self.service.workflow(name, None).await {
            Ok((_, workflow)) => workflow.mcp.is_some(),
            Err(RunError::WorkflowMissing(_)) => false,
            Err(error) => return Err(internal(error)),
        };
        if !offered {
            return Err(ErrorData::invalid_params(format!("unknown tool: {name}"), None));
        }
        let request = RunRequest {
            input: Value::Object(arguments),
            origin: Origin {
                trigger: Some(json!({ "mcp": name })),
                ..Origin::default()
            },
            caller: caller(context),
            ..RunRequest::default()
        };
        let run_id = match self.service.start(name, request, None).await {
            Ok((started, _)) => started.run.id,
            Err(error) => return refused(error).map(Called::Now),
        };
        if context.client_capabilities().is_some_and(|caps| caps.supports_tasks()) {
            return self.created_task(&run_id).await.map(Called::Task);
        }
        self.follow(&run_id, Some(0), self.wait, context).await;
        self.answer(&run_id, context).await.map(Called::Now)
    }

    /// `sandstep_get_run {run_id, wait_seconds}`.
    pub(super) async fn get_run(
        &self,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let run_id = string(&arguments, "run_id")?.ok_or_else(|| missing("run_id"))?;
        let wait = match arguments.get("wait_seconds") {
            None | Some(Value::Null) => None,
            // Capped before it becomes a Duration, which a huge number overflows.
            Some(value) => match value.as_f64().filter(|s| s.is_finite() && *s >= 0.0) {
                Some(seconds) => Some(std::time::Duration::from_secs_f64(seconds.min(self.wait.as_secs_f64()))),
                None => {
                    return Err(ErrorData::invalid_params(
                        "wait_seconds must be a number of at least 0",
                        None,
                    ))
                }
            },
        };
        if let Some(wait) = wait.filter(|wait| !wait.is_zero()) {
            match self.service.run_row(&run_id).await {
                Ok(_) => self.follow(&run_id, None, wait, context).await,
                Err(error) => return refused(error),
            }
        }
        self.answer(&run_id, context).await
    }

    /// `sandstep_send_event {topic, data, idempotency_key}`.
    pub(super) async fn send_event(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let topic = string(&arguments, "topic")?.ok_or_else(|| missing("topic"))?;
        let key = string(&arguments, "idempotency_key")?;
        let data = arguments.get("data").cloned().unwrap_or(Value::Null);
        let posted = match self.service.post_event(&topic, &data, key.as_deref(), None).await {
            Ok(posted) => posted,
            Err(error) => return refused(error),
        };
        let text = match (posted.created, posted.runs.len()) {
            (false, _) => format!("Event {} was posted before with this idempotency key.", posted.id),
            (true, 0) => format!("Posted event {} to {topic}; no run was waiting for it.", posted.id),
            (true, n) => format!("Posted event {} to {topic}; {n} waiting run(s) resume.", posted.id),
        };
        let structured = json!({ "event_id": posted.id, "created": posted.created, "resumed": posted.runs });
        Ok(success(text, structured))
    }

    /// `sandstep_list_runs {workflow, status, limit}`.
    pub(super) async fn list_runs(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let status = string(&arguments, "status")?;
        if let Some(status) = &status {
            RunStatus::parse_filter(status).map_err(|message| ErrorData::invalid_params(message, None))?;
        }
        let limit = match arguments.get("limit") {
            None | Some(Value::Null) => LISTED_RUNS,
            Some(value) => value
                .as_i64()
                .filter(|n| (1..=MAX_LISTED_RUNS).contains(n))
                .ok_or_else(|| ErrorData::invalid_params(format!("limit must be 1 to {MAX_LISTED_RUNS}"), None))?,
        };
        let filter = RunFilter {
            workflow: string(&arguments, "workflow")?,
            status,
            limit,
            ..RunFilter::default()
        };
        let runs = self.service.list(&filter).await.map_err(internal)?;
        let listed: Vec<Value> = runs
            .iter()
            .map(|run| {
                json!({
                    "run_id": run.row.id,
                    "workflow": run.row.workflow,
                    "version": run.row.version,
                    "status": run.row.status,
                    "created_at": crate::service::view::rfc3339(run.row.created_ms as u64),
                    "error": run.row.error,
                })
            })
            .collect();
        let text = if listed.is_empty() {
            "No runs.".to_string()
        } else {
            let lines: Vec<String> = runs
                .iter()
                .map(|run| {
                    format!(
                        "{} {} v{} {}",
                        run.row.id, run.row.workflow, run.row.version, run.row.status
                    )
                })
                .collect();
            lines.join("\n")
        };
        Ok(success(text, json!({ "runs": listed })))
    }

    /// Follows the run's events after `after` (`None`: from now) until it
    /// ends, pauses for an event (which may be the caller's to send), or
    /// `wait` is over (or the client cancels the call: the run goes on).
    /// Each step's start and end is a progress notification when the call
    /// carries a `progressToken`.
    async fn follow(
        &self,
        run_id: &str,
        after: Option<u64>,
        wait: std::time::Duration,
        context: &RequestContext<RoleServer>,
    ) {
        let Ok(mut following) = self.service.follow_events(run_id, after).await else {
            return;
        };
        let token = context.meta.get_progress_token();
        let deadline = tokio::time::Instant::now() + wait;
        let mut progress = 0.0;
        let mut awaiting_events = std::collections::HashSet::new();
        loop {
            let event = tokio::select! {
                event = tokio::time::timeout_at(deadline, following.next()) => match event {
                    Ok(Some(event)) => event,
                    Ok(None) | Err(_) => return,
                },
                _ = context.ct.cancelled() => return,
            };
            match &event.kind {
                EventKind::StepWaiting {
                    step, event: Some(_), ..
                } => {
                    awaiting_events.insert(step.clone());
                }
                EventKind::StepSucceeded { step, .. }
                | EventKind::StepFailed { step, .. }
                | EventKind::StepSkipped { step, .. }
                | EventKind::StepCanceled { step, .. } => {
                    awaiting_events.remove(step);
                }
                // A pause read back from the store may be over already.
                EventKind::RunPaused { .. } if !awaiting_events.is_empty() && self.paused(run_id).await => return,
                _ => {}
            }
            let Some(token) = &token else { continue };
            if let Some(message) = progress_message(&event.kind) {
                progress += 1.0;
                let notification = ProgressNotificationParam::new(token.clone(), progress).with_message(message);
                if context.peer.notify_progress(notification).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Whether the run is paused now.
    async fn paused(&self, run_id: &str) -> bool {
        let row = self.service.run_row(run_id).await;
        row.is_ok_and(|row| RunStatus::parse(&row.status) == Some(RunStatus::Paused))
    }

    /// The run as it stands: its output once completed, its error once
    /// failed or canceled (`isError`), else its id, status and page.
    async fn answer(&self, run_id: &str, context: &RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let view = match self.service.get(run_id).await {
            Ok(view) => view,
            Err(error) => return refused(error),
        };
        Ok(answer(&view, &ui_link(context, run_id)))
    }
}

/// What a workflow tool's call answers: the run's result, or (for a
/// client that declared the tasks extension) a task to poll.
pub(super) enum Called {
    Now(CallToolResult),
    Task(rmcp::model::CreateTaskResult),
}

/// A run as a tool result (see [`Tools::answer`]); `page` is its UI link.
pub(super) fn answer(view: &RunView, page: &str) -> CallToolResult {
    let run_id = view.row.id.as_str();
    let status = view.row.status.clone();
    let mut result = match RunStatus::parse(&status) {
        Some(RunStatus::Completed) => {
            let output = view.row.output.clone().unwrap_or(Value::Null);
            let mut result = success(serde_json::to_string_pretty(&output).unwrap_or_default(), output);
            result
                .content
                .push(ContentBlock::text(format!("Run {run_id} completed.")));
            result
        }
        Some(RunStatus::Failed | RunStatus::Canceled) => {
            let error = run_error(view);
            let text = format!(
                "Run {run_id} {status}: {}: {}",
                error["kind"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or_default()
            );
            let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
            result.structured_content = Some(json!({ "run_id": run_id, "status": status, "error": error, "ui": page }));
            result
        }
        _ => {
            let waiting = waiting_topics(view);
            let mut text = format!(
                    "Run {run_id} is {status} (it goes on). Follow it with {} {{\"run_id\": \"{run_id}\"}}; its page: {page}",
                    tools::GET_RUN
                );
            if !waiting.is_empty() {
                text.push_str(&format!(
                    ". It waits for an event of topic {}: post one with {}.",
                    waiting.join(", "),
                    tools::SEND_EVENT
                ));
            }
            let structured = json!({ "run_id": run_id, "status": status, "ui": page, "waiting_for": waiting });
            success(text, structured)
        }
    };
    let mut meta = MetaObject::new();
    meta.0.insert("sandstep.dev/run_id".into(), run_id.into());
    meta.0.insert("sandstep.dev/status".into(), status.into());
    result.meta = Some(meta);
    result
}

/// A step's start or end, as a progress message (other events are not progress).
fn progress_message(kind: &EventKind) -> Option<String> {
    let item = |item: &Option<usize>| item.map(|i| format!(" item {i}")).unwrap_or_default();
    Some(match kind {
        EventKind::StepStarted {
            step, item: i, attempt, ..
        } => {
            format!("step {step}{} started (attempt {attempt})", item(i))
        }
        EventKind::StepSucceeded { step, .. } => format!("step {step} succeeded"),
        EventKind::StepFailed { step, item: i, .. } => format!("step {step}{} failed", item(i)),
        EventKind::StepSkipped { step, .. } => format!("step {step} skipped"),
        EventKind::StepWaiting {
            step,
            event: Some(topic),
            ..
        } => format!("step {step} waiting for event {topic}"),
        EventKind::StepWaiting { step, .. } => format!("step {step} sleeping"),
        EventKind::StepChildStarted { step, .. } => format!("step {step} started a child run"),
        _ => return None,
    })
}

/// The run's error: the first failed step's kind and message, else the run's.
fn run_error(view: &RunView) -> Value {
    let failed = view
        .steps
        .iter()
        .find_map(|step| Some((step.id.as_str(), step.error.as_ref()?)));
    match failed {
        Some((step, error)) => json!({ "kind": error.kind, "message": error.message, "step": step }),
        None => json!({ "kind": view.row.status, "message": view.row.error.clone().unwrap_or_default() }),
    }
}

/// The topics the run's waiting steps wait for.
fn waiting_topics(view: &RunView) -> Vec<String> {
    view.steps
        .iter()
        .filter(|step| step.status == "waiting")
        .filter_map(|step| step.wait.as_ref().map(|wait| wait.topic.clone()))
        .collect()
}

/// The run's page in the web UI, on the host the client called.
pub(super) fn ui_link(context: &RequestContext<RoleServer>, run_id: &str) -> String {
    let parts = context.extensions.get::<http::request::Parts>();
    let header = |name: &str| {
        parts
            .and_then(|parts| parts.headers.get(name))
            .and_then(|value| value.to_str().ok())
    };
    let path = format!("/ui/#/runs/{run_id}");
    match header("host") {
        Some(host) => format!("{}://{host}{path}", header("x-forwarded-proto").unwrap_or("http")),
        None => path,
    }
}

/// The token the HTTP request presented (its budget applies to the run).
fn caller(context: &RequestContext<RoleServer>) -> Option<Caller> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
}

/// A tool result: `text` for the model, `structured` for programs.
fn success(text: String, structured: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    result
}

/// What the engine refused (an input that does not match the workflow's
/// inputs, a spent budget, an unknown run), as a tool error the model can
/// read and act on: the API's problem details.
fn refused(error: RunError) -> Result<CallToolResult, ErrorData> {
    if matches!(error, RunError::Store(_) | RunError::Internal(_)) {
        return Err(internal(error));
    }
    let problem = ApiError::from(error).problem();
    let mut result = CallToolResult::error(vec![ContentBlock::text(problem.detail().to_string())]);
    result.structured_content = Some(json!({ "error": problem }));
    Ok(result)
}

/// A string argument, absent or null as `None`.
fn string(arguments: &JsonObject, name: &str) -> Result<Option<String>, ErrorData> {
    match arguments.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ErrorData::invalid_params(format!("{name} must be a string"), None)),
    }
}

fn missing(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("{name} is required"), None)
}
