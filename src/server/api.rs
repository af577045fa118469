//! Handlers for modules, workflows and runs under /v1.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{bytes_rejection, ApiError, Created, Json};
use super::runner::DbCatalog;
use super::view::{run_view, RunView};
use super::AppState;
use crate::modules::{check_name, check_tag, DEFAULT_TAG};
use crate::run::RunStatus;
use crate::store::runs::RunFilter;

type Result<T> = std::result::Result<T, ApiError>;

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ModuleParams {
    /// Module name (a-z, 0-9, . _ -).
    name: Option<String>,
    /// Tag, default `latest`.
    tag: Option<String>,
}

/// Upload a module: the raw wasm body; validated, compiled, stored.
#[utoipa::path(post, path = "/v1/modules", params(ModuleParams), request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = crate::store::modules::ModuleRecord), (status = 413), (status = 415), (status = 422)))]
pub async fn upload_module(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ModuleParams>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let kind = content_type(&headers);
    if kind != "application/wasm" && kind != "application/octet-stream" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "upload the module as Content-Type: application/wasm (got {:?})",
            if kind.is_empty() { "none" } else { &kind }
        )));
    }
    let name = params
        .name
        .ok_or_else(|| ApiError::bad_request("the `name` query parameter is required", Some("name")))?;
    let tag = params.tag.unwrap_or_else(|| DEFAULT_TAG.into());
    check_name(&name).map_err(|e| ApiError::unprocessable("invalid-name", e.to_string(), Some("name")))?;
    check_tag(&tag).map_err(|e| ApiError::unprocessable("invalid-name", e.to_string(), Some("tag")))?;
    let bytes = body.map_err(bytes_rejection)?;
    let module = state
        .runner
        .compile(bytes.to_vec())
        .await
        .map_err(|e| ApiError::unprocessable("invalid-module", e.to_string(), Some("body")))?;
    let record = state.runner.db.put_module(&bytes, &module.info, &name, &tag).await?;
    Ok(Created(serde_json::to_value(record).expect("serializable")).into_response())
}

#[utoipa::path(get, path = "/v1/modules", responses((status = 200, body = Vec<crate::store::modules::ModuleRecord>)))]
pub async fn list_modules(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>> {
    Ok(axum::Json(json!({ "modules": state.runner.db.list_modules().await? })))
}

#[utoipa::path(get, path = "/v1/modules/{name}", responses((status = 200), (status = 404)))]
pub async fn get_module(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<axum::Json<Value>> {
    let tags = state.runner.db.module_tags(&name).await?;
    if tags.is_empty() {
        return Err(ApiError::NotFound(format!("module {name}")));
    }
    Ok(axum::Json(json!({ "name": name, "tags": tags })))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DeleteParams {
    /// Only this tag; all tags of the name without it.
    tag: Option<String>,
}

#[utoipa::path(delete, path = "/v1/modules/{name}", params(DeleteParams), responses((status = 204), (status = 404)))]
pub async fn delete_module(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode> {
    match state.runner.db.delete_module(&name, params.tag.as_deref()).await? {
        0 => Err(ApiError::NotFound(format!(
            "module {name}{}",
            params.tag.map(|t| format!(":{t}")).unwrap_or_default()
        ))),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// Create a new version of a workflow from a YAML or JSON definition.
#[utoipa::path(put, path = "/v1/workflows/{name}", request_body(content = String, content_type = "application/yaml"),
    responses((status = 201), (status = 200), (status = 415), (status = 422)))]
pub async fn put_workflow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let kind = content_type(&headers);
    let accepted = [
        "application/json",
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "text/plain",
    ];
    if !accepted.contains(&kind.as_str()) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the definition as application/yaml or application/json (got {:?})",
            if kind.is_empty() { "none" } else { &kind }
        )));
    }
    let bytes = body.map_err(bytes_rejection)?;
    let source =
        String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad_request("the definition is not UTF-8", None))?;
    let catalog = DbCatalog::load(&state.runner.db).await?;
    let workflow =
        crate::workflow::load(&source, state.runner.caps(), Some(&catalog)).map_err(ApiError::InvalidWorkflow)?;
    if workflow.name != name {
        return Err(ApiError::unprocessable(
            "name-mismatch",
            format!(
                "the definition is named {:?} but was sent to /v1/workflows/{name}",
                workflow.name
            ),
            Some("name"),
        ));
    }
    let (version, created) = state.runner.db.put_workflow(&name, &source).await?;
    let body = json!({ "name": name, "version": version.version, "created": created, "steps": workflow.steps.len() });
    Ok(if created {
        Created(body).into_response()
    } else {
        axum::Json(body).into_response()
    })
}

#[utoipa::path(get, path = "/v1/workflows", responses((status = 200)))]
pub async fn list_workflows(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>> {
    let workflows: Vec<Value> = state
        .runner
        .db
        .list_workflows()
        .await?
        .into_iter()
        .map(|w| json!({ "name": w.name, "version": w.version, "created_ms": w.created_ms }))
        .collect();
    Ok(axum::Json(json!({ "workflows": workflows })))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct VersionParams {
    /// A version number; the latest without it.
    version: Option<i64>,
}

#[utoipa::path(get, path = "/v1/workflows/{name}", params(VersionParams), responses((status = 200), (status = 404)))]
pub async fn get_workflow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<VersionParams>,
) -> Result<axum::Json<Value>> {
    let db = &state.runner.db;
    let found = db
        .workflow(&name, params.version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflow {name}")))?;
    let versions = db.workflow_versions(&name).await?;
    Ok(axum::Json(json!({
        "name": found.name, "version": found.version, "versions": versions,
        "source": found.source, "created_ms": found.created_ms,
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The run's input (an object).
    #[serde(default)]
    #[schema(value_type = Object)]
    input: Value,
    /// Starting twice with the same key answers the first run.
    idempotency_key: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct WaitParams {
    /// Answer when the run ends or this much time passed (e.g. 30s).
    wait: Option<String>,
}

/// Start a run of the latest version of a workflow.
#[utoipa::path(post, path = "/v1/workflows/{name}/runs", params(WaitParams), request_body = StartRun,
    responses((status = 201, body = RunView), (status = 200, body = RunView), (status = 404), (status = 422)))]
pub async fn start_run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<WaitParams>,
    Json(request): Json<StartRun>,
) -> Result<Response> {
    let wait = parse_wait(params.wait.as_deref())?;
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(ApiError::unprocessable(
                "invalid-body",
                "idempotency_key must be 1 to 200 characters",
                Some("idempotency_key"),
            ));
        }
    }
    let (row, created) = state
        .runner
        .start(&name, &request.input, request.idempotency_key.as_deref())
        .await?;
    if let Some(wait) = wait {
        wait_for_end(&state, &row.id, wait).await?;
    }
    let view = view(&state, &row.id).await?;
    let body = serde_json::to_value(view).expect("serializable");
    Ok(if created {
        Created(body).into_response()
    } else {
        axum::Json(body).into_response()
    })
}

fn parse_wait(wait: Option<&str>) -> Result<Option<Duration>> {
    let Some(text) = wait else { return Ok(None) };
    let duration = crate::units::parse_duration(text).map_err(|e| ApiError::bad_request(e, Some("wait")))?;
    if duration > Duration::from_secs(300) {
        return Err(ApiError::bad_request("wait is at most 300s", Some("wait")));
    }
    Ok(Some(duration))
}

/// Returns when the run has ended or `wait` is over, whichever comes first.
async fn wait_for_end(state: &AppState, run_id: &str, wait: Duration) -> Result<()> {
    // Registered before the stored status is read: the end cannot slip between.
    let ended = state.runner.watchers.on_end(run_id);
    if state.runner.db.run(run_id).await?.is_some_and(|row| row.is_ended()) {
        return Ok(());
    }
    let _ = tokio::time::timeout(wait, ended).await;
    Ok(())
}

pub(crate) async fn view(state: &AppState, run_id: &str) -> Result<RunView> {
    let row = state.runner.run_row(run_id).await?;
    let (_, workflow) = state.runner.workflow(&row.workflow, Some(row.version)).await?;
    let events = state.runner.db.events(run_id, 0).await?;
    Ok(run_view(row, &workflow, &events))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    workflow: Option<String>,
    /// queued, running, paused, completed, failed, canceling or canceled.
    status: Option<String>,
    /// 1 to 500, default 50.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs", params(ListParams), responses((status = 200), (status = 400)))]
pub async fn list_runs(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<Value>> {
    if let Some(status) = &params.status {
        if RunStatus::parse(status).is_none() {
            let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::bad_request(
                format!("unknown status {status:?} (one of {})", known.join(", ")),
                Some("status"),
            ));
        }
    }
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500", Some("limit")));
    }
    let runs = state
        .runner
        .db
        .list_runs(&RunFilter {
            workflow: params.workflow,
            status: params.status,
            before: params.cursor,
            limit: limit + 1,
        })
        .await?;
    let more = runs.len() as i64 > limit;
    let runs: Vec<_> = runs.into_iter().take(limit as usize).collect();
    let next = if more { runs.last().map(|r| r.id.clone()) } else { None };
    Ok(axum::Json(json!({ "runs": runs, "next_cursor": next })))
}

#[utoipa::path(get, path = "/v1/runs/{id}", responses((status = 200, body = RunView), (status = 404)))]
pub async fn get_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<axum::Json<RunView>> {
    Ok(axum::Json(view(&state, &id).await?))
}

/// Cancel a run: running attempts are interrupted; status `canceling`, then `canceled`.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", responses((status = 202, body = RunView), (status = 404), (status = 409)))]
pub async fn cancel_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response> {
    let row = state.runner.run_row(&id).await?;
    if row.is_ended() {
        return Err(ApiError::Conflict(format!("run {id} already ended ({})", row.status)));
    }
    let ended = state.runner.watchers.on_end(&id);
    if !state.runner.cancel(&id) {
        return Err(ApiError::Conflict(format!("run {id} is not running on this server")));
    }
    // Answer once the cancellation is recorded (canceling, usually canceled).
    let _ = tokio::time::timeout(Duration::from_secs(5), ended).await;
    Ok((StatusCode::ACCEPTED, axum::Json(view(&state, &id).await?)).into_response())
}
