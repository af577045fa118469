//! `POST /v1/runs/{id}/upgrade` moves an unfinished run to another version
//! of its workflow after a replay check; `POST /v1/workflows/{name}/check`
//! is the dry run over every unfinished run for a definition not stored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::api::definition_source;
use super::error::{bytes_rejection, ApiError, Path};
use super::AppState;
use crate::service::upgrade::RunCheck;
use crate::service::view::RunView;

type Result<T> = std::result::Result<T, ApiError>;

/// What to upgrade a run to.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRun {
    /// The version to move to (default: the workflow's latest); a whole
    /// number (`2.0` is whole too).
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole_version")]
    version: Option<i64>,
}

/// A whole JSON number (`2.0` is whole too), as a version.
fn whole_version<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_i64()
        .or_else(|| super::api::whole(&n).and_then(|v| i64::try_from(v).ok()))
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole version number, got {n}")))
}

/// Move an unfinished run to another version of its workflow. A code run's
/// journal is replayed against the version's module, and every recorded
/// call must match; a YAML run's started steps must exist in the version
/// with the same module digest and the same `needs`. The run then goes on
/// under the version (event `run.upgraded`; the run shows `version` and
/// `upgraded_from`). 409 `upgrade-diverges` names the first difference and
/// leaves the run untouched; 409 `run-ended` for a run that ended.
#[utoipa::path(post, path = "/v1/runs/{id}/upgrade", request_body(content = UpgradeRun, description = "optional"),
    responses((status = 200, body = RunView), (status = 400), (status = 404), (status = 409), (status = 413), (status = 422)))]
pub async fn upgrade_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<RunView>> {
    let bytes = body.map_err(bytes_rejection)?;
    let request: UpgradeRun = if bytes.iter().all(u8::is_ascii_whitespace) {
        UpgradeRun::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("the body: {e}"), None))?
    };
    if let Some(version) = request.version.filter(|v| *v < 1) {
        return Err(ApiError::unprocessable(
            "invalid-body",
            format!("version must be 1 or more, got {version}"),
            Some("version"),
        ));
    }
    state.service.upgrade(&id, request.version).await?;
    Ok(axum::Json(state.service.get(&id).await?))
}

/// Whether each unfinished run of a workflow would move to a definition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowCheck {
    pub workflow: String,
    /// The version the definition is (the latest when it is the latest's
    /// text) or would be once applied.
    pub version: i64,
    /// Every unfinished run of the workflow, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<RunCheck>,
}

/// The dry run of an upgrade: for a definition of the workflow (YAML or
/// JSON, not stored), whether each unfinished run would move to it, or the
/// first difference. Nothing changes.
#[utoipa::path(post, path = "/v1/workflows/{name}/check", request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = WorkflowCheck), (status = 400), (status = 413), (status = 415), (status = 422)))]
pub async fn check_workflow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<WorkflowCheck>> {
    let source = definition_source(&headers, body)?;
    let workflow = state.service.candidate(&name, &source).await?;
    let runs = state.service.check_runs(&workflow).await?;
    Ok(axum::Json(WorkflowCheck {
        workflow: name,
        version: workflow.version,
        runs,
    }))
}
