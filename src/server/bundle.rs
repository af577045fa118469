//! `GET /v1/runs/{id}/bundle`: a run, its child runs and every module they
//! used, as a zip (`service::bundle`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Path};
use super::AppState;

/// Download a run bundle (`application/zip`): `manifest.json` (the
/// definition, input, status, output or error, times, module digests and
/// secret names, never values), `modules/<digest>.wasm`, `events.jsonl`
/// (the run's events as stored), and each child run under
/// `children/<run id>/`.
#[utoipa::path(get, path = "/v1/runs/{id}/bundle",
    responses((status = 200, content_type = "application/zip", body = Vec<u8>, description = "the bundle"), (status = 404)))]
pub async fn run_bundle(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let bytes = state.service.bundle(&id).await?;
    let disposition = format!("attachment; filename=\"run-{id}.zip\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
