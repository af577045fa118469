//! `GET /v1/runs`: one page of runs, newest first, filtered by workflow,
//! status and creation time, each with its step counts.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Query};
use super::page;
use super::AppState;
use crate::run::RunStatus;
use crate::service::summary::RunSummary;
use crate::store::runs::RunFilter;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    workflow: Option<String>,
    /// queued, running, paused, completed, failed, canceling or canceled.
    #[param(pattern = "^(queued|running|paused|completed|failed|canceling|canceled)$")]
    status: Option<String>,
    /// Only runs created at or after this time (RFC 3339, e.g.
    /// `2026-11-30T08:00:00Z`).
    #[param(format = DateTime)]
    created_after: Option<String>,
    /// Only runs created before this time (RFC 3339).
    #[param(format = DateTime)]
    created_before: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of runs, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunList {
    runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs", params(ListParams), responses((status = 200, body = RunList), (status = 400)))]
pub async fn list_runs(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<RunList>, ApiError> {
    if let Some(status) = &params.status {
        RunStatus::parse_filter(status).map_err(|message| ApiError::bad_request(message, Some("status")))?;
    }
    let limit = page::limit(params.limit)?;
    let runs = state
        .service
        .list(&RunFilter {
            workflow: params.workflow,
            status: params.status,
            before: params.cursor,
            created_after_ms: time(params.created_after.as_deref(), "created_after")?,
            created_before_ms: time(params.created_before.as_deref(), "created_before")?,
            limit: limit + 1,
        })
        .await?;
    let (runs, next_cursor) = page::cut(runs, limit, |r| r.row.id.clone());
    Ok(axum::Json(RunList { runs, next_cursor }))
}

/// An RFC 3339 time as ms since the epoch; 400 naming `field` otherwise.
fn time(text: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| {
            ApiError::bad_request(
                format!("{field} is not an RFC 3339 time like 2026-11-30T08:00:00Z: {text:?} ({e})"),
                Some(field),
            )
        })
}
