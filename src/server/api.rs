//! Handlers for modules, workflows and runs under /v1.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{bytes_rejection, ApiError, Created, Json, Path, Query};
use super::AppState;
use crate::modules::{check_name, check_tag, DEFAULT_TAG};
use crate::service::view::RunView;
use crate::service::{Caller, RunRequest};
use crate::store::modules::ModuleRecord;

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
    responses((status = 201, body = ModuleRecord), (status = 400), (status = 413), (status = 415), (status = 422)))]
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
    let record = state.service.put_module(&name, &tag, bytes.to_vec()).await?;
    Ok(Created(serde_json::to_value(record).expect("serializable")).into_response())
}

/// Every stored `name:tag`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModuleList {
    modules: Vec<ModuleRecord>,
}

#[utoipa::path(get, path = "/v1/modules", responses((status = 200, body = ModuleList)))]
pub async fn list_modules(State(state): State<Arc<AppState>>) -> Result<axum::Json<ModuleList>> {
    Ok(axum::Json(ModuleList {
        modules: state.service.list_modules().await?,
    }))
}

/// One module name and its tags.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModuleTags {
    name: String,
    tags: Vec<ModuleRecord>,
}

#[utoipa::path(get, path = "/v1/modules/{name}", responses((status = 200, body = ModuleTags), (status = 404)))]
pub async fn get_module(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<axum::Json<ModuleTags>> {
    let tags = state.service.module(&name).await?;
    Ok(axum::Json(ModuleTags { name, tags }))
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
    state.service.delete_module(&name, params.tag.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A workflow definition sent as YAML or JSON text.
pub(super) fn definition_source(
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<String> {
    let kind = content_type(headers);
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
    String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad_request("the definition is not UTF-8", None))
}

/// Create a new version of a workflow from a YAML or JSON definition.
#[utoipa::path(put, path = "/v1/workflows/{name}", request_body(content = String, content_type = "application/yaml"),
    responses((status = 201, body = WorkflowApplied), (status = 200, body = WorkflowApplied), (status = 400), (status = 413), (status = 415), (status = 422)))]
pub async fn put_workflow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let source = definition_source(&headers, body)?;
    let (version, created, steps) = state.service.put_workflow(&name, &source).await?;
    let body = serde_json::to_value(WorkflowApplied {
        name,
        version: version.version,
        created,
        steps,
    })
    .expect("serializable");
    Ok(if created {
        Created(body).into_response()
    } else {
        axum::Json(body).into_response()
    })
}

/// What applying a definition did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowApplied {
    name: String,
    version: i64,
    /// `false` when the definition equals the latest version.
    created: bool,
    /// How many steps the definition has.
    steps: usize,
}

/// A workflow's latest version.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowSummary {
    name: String,
    version: i64,
    created_ms: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowList {
    workflows: Vec<WorkflowSummary>,
}

#[utoipa::path(get, path = "/v1/workflows", responses((status = 200, body = WorkflowList)))]
pub async fn list_workflows(State(state): State<Arc<AppState>>) -> Result<axum::Json<WorkflowList>> {
    let workflows = state
        .service
        .list_workflows()
        .await?
        .into_iter()
        .map(|w| WorkflowSummary {
            name: w.name,
            version: w.version,
            created_ms: w.created_ms,
        })
        .collect();
    Ok(axum::Json(WorkflowList { workflows }))
}

/// One version of a workflow with its source, declared inputs and
/// triggers, and every version number.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowDetail {
    name: String,
    version: i64,
    versions: Vec<i64>,
    /// The definition as it was applied (YAML or JSON).
    source: String,
    created_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The declared `inputs`, in definition order.
    #[schema(value_type = std::collections::BTreeMap<String, crate::workflow::definition::InputDef>)]
    inputs: indexmap::IndexMap<String, crate::workflow::definition::InputDef>,
    triggers: Vec<crate::service::triggers::TriggerView>,
    /// Present when the definition says `mcp:`: the workflow is an MCP tool at `/mcp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    mcp: Option<McpToolView>,
}

/// A workflow offered to AI agents as an MCP tool.
#[derive(Serialize, utoipa::ToSchema)]
pub struct McpToolView {
    /// The tool name (the workflow's).
    tool: String,
    /// The tool's description (`mcp.description`, else the workflow's).
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct VersionParams {
    /// A version number; the latest without it.
    version: Option<i64>,
}

#[utoipa::path(get, path = "/v1/workflows/{name}", params(VersionParams), responses((status = 200, body = WorkflowDetail), (status = 400), (status = 404)))]
pub async fn get_workflow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<VersionParams>,
) -> Result<axum::Json<WorkflowDetail>> {
    let (found, versions) = state.service.workflow_source(&name, params.version).await?;
    let (_, workflow) = state.service.workflow(&name, Some(found.version)).await?;
    let triggers = state.service.triggers_of(&name, found.version, &workflow).await?;
    Ok(axum::Json(WorkflowDetail {
        name: found.name,
        version: found.version,
        versions,
        source: found.source,
        created_ms: found.created_ms,
        description: workflow.description.clone(),
        inputs: workflow.inputs.clone(),
        triggers,
        mcp: workflow.mcp.as_ref().map(|tool| McpToolView {
            tool: workflow.name.clone(),
            description: tool.description.clone(),
        }),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The run's input (an object; null or absent: none).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input: Value,
    /// Starting twice with the same key answers the first run.
    #[schema(min_length = 1, max_length = 200)]
    idempotency_key: Option<String>,
    /// Caps the fuel all of the run's attempts may consume together (the
    /// definition's `budget.fuel` wins when smaller).
    budget: Option<Budget>,
}

/// `{"fuel": N}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// A whole number (`1e9` and `1000000000.0` are whole too), at most
    /// 2^63 - 1.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "whole_number")]
    fuel: u64,
}

/// A JSON number that is whole and not negative: an integer, or a float
/// without a fraction (`1e9`, `2.0`).
pub(super) fn whole(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// A whole JSON number: an integer, or a float without a fraction.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    whole(&n).ok_or_else(|| serde::de::Error::custom(format!("expected a whole number of fuel units, got {n}")))
}

/// The budget of a start request, refused when zero.
fn budget_fuel(budget: Option<&Budget>, field: &str) -> Result<Option<u64>> {
    match budget {
        Some(b) if b.fuel == 0 || b.fuel > i64::MAX as u64 => Err(ApiError::unprocessable(
            "invalid-input",
            format!("{field} must be between 1 and {}", i64::MAX),
            Some(field),
        )),
        Some(b) => Ok(Some(b.fuel)),
        None => Ok(None),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct WaitParams {
    /// Answer when the run ends or this much time passed: up to 300s
    /// (e.g. 30s, 250ms).
    #[param(pattern = r"^([0-9]{1,5}ms|([0-9]|[0-9][0-9]|[12][0-9][0-9]|300)s)$")]
    pub(super) wait: Option<String>,
}

/// A start's origin: the W3C `traceparent` it was sent with, if any (its
/// run's span is that span's child).
fn traced(headers: &HeaderMap) -> crate::run::event::Origin {
    crate::run::event::Origin {
        traceparent: crate::telemetry::ids::from_headers(headers),
        ..Default::default()
    }
}

/// Start a run of the latest version of a workflow.
#[utoipa::path(post, path = "/v1/workflows/{name}/runs", params(WaitParams, ("traceparent" = Option<String>, Header, description = "W3C Trace Context: the run's span is this span's child (docs/traces.md)")), request_body = StartRun,
    responses((status = 201, body = RunView), (status = 200, body = RunView), (status = 400), (status = 404), (status = 413), (status = 415), (status = 422), (status = 429), (status = 503)))]
pub async fn start_run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<WaitParams>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Json(request): Json<StartRun>,
) -> Result<Response> {
    let wait = parse_wait(params.wait.as_deref())?;
    let request = RunRequest {
        budget_fuel: budget_fuel(request.budget.as_ref(), "budget.fuel")?,
        input: request.input,
        idempotency_key: request.idempotency_key,
        caller: caller.map(|Extension(c)| c),
        origin: traced(&headers),
    };
    let (started, view) = state.service.start(&name, request, wait).await?;
    let view = match view {
        Some(view) => view,
        None => state.service.get(&started.run.id).await?,
    };
    let body = serde_json::to_value(view).expect("serializable");
    Ok(if started.created {
        Created(body).into_response()
    } else {
        axum::Json(body).into_response()
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBatch {
    /// The runs to start, each `{"input": {...}, "idempotency_key": "..."}`:
    /// at least one, at most the server's `--max-batch` (default 1,000).
    #[schema(min_items = 1, max_items = 1000)]
    runs: Vec<StartRun>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchRun {
    id: String,
    /// `false` when an existing run with the same idempotency key answered.
    created: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchAnswer {
    /// One entry per requested run, in request order.
    runs: Vec<BatchRun>,
}

/// Start up to `--max-batch` runs of the latest version of a workflow, all
/// or nothing: any invalid item refuses the whole batch (422 naming each
/// item's index and field); otherwise every run is stored in one
/// transaction before the answer.
#[utoipa::path(post, path = "/v1/workflows/{name}/runs/batch", params(("traceparent" = Option<String>, Header, description = "W3C Trace Context: the run's span is this span's child (docs/traces.md)")), request_body = StartBatch,
    responses((status = 201, body = BatchAnswer), (status = 200, body = BatchAnswer), (status = 400), (status = 404), (status = 413), (status = 415), (status = 422), (status = 429), (status = 503)))]
pub async fn start_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Json(batch): Json<StartBatch>,
) -> Result<Response> {
    let origin = traced(&headers);
    let mut requests = Vec::with_capacity(batch.runs.len());
    for (i, r) in batch.runs.into_iter().enumerate() {
        requests.push(RunRequest {
            budget_fuel: budget_fuel(r.budget.as_ref(), &format!("runs[{i}].budget.fuel"))?,
            input: r.input,
            idempotency_key: r.idempotency_key,
            caller: caller.as_ref().map(|Extension(c)| c.clone()),
            origin: origin.clone(),
        });
    }
    let started = state.service.start_batch(&name, requests).await?;
    let any_created = started.iter().any(|s| s.created);
    let answer = BatchAnswer {
        runs: started
            .into_iter()
            .map(|s| BatchRun {
                id: s.run.id,
                created: s.created,
            })
            .collect(),
    };
    let body = serde_json::to_value(answer).expect("serializable");
    Ok(if any_created {
        Created(body).into_response()
    } else {
        axum::Json(body).into_response()
    })
}

pub(super) fn parse_wait(wait: Option<&str>) -> Result<Option<Duration>> {
    let Some(text) = wait else { return Ok(None) };
    // What the schema's pattern says: a number of seconds or milliseconds.
    let digits = text.strip_suffix("ms").or_else(|| text.strip_suffix('s'));
    if !digits.is_some_and(|d| (1..=5).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::bad_request(
            format!("wait {text:?} is not a number of seconds or milliseconds (e.g. 30s, 250ms)"),
            Some("wait"),
        ));
    }
    let duration = crate::units::parse_duration(text).map_err(|e| ApiError::bad_request(e, Some("wait")))?;
    if duration > Duration::from_secs(300) {
        return Err(ApiError::bad_request("wait is at most 300s", Some("wait")));
    }
    Ok(Some(duration))
}

#[utoipa::path(get, path = "/v1/runs/{id}", responses((status = 200, body = RunView), (status = 404)))]
pub async fn get_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<axum::Json<RunView>> {
    Ok(axum::Json(state.service.get(&id).await?))
}

/// Cancel a run: the request is stored in the run's inbox before the
/// answer (never lost, even if the server stops); running attempts are
/// interrupted; status `canceling`, then `canceled`.
/// `?wait=0s` answers as soon as the request is stored (default: up to 5 s
/// for the run to end).
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", params(WaitParams), responses((status = 202, body = RunView), (status = 400), (status = 404), (status = 409)))]
pub async fn cancel_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(params): Query<WaitParams>,
) -> Result<Response> {
    let wait = parse_wait(params.wait.as_deref())?.unwrap_or(Duration::from_secs(5));
    state.service.cancel(&id, wait).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(state.service.get(&id).await?)).into_response())
}
