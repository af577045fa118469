//! `DELETE /v1/cache?module=NAME`: drops step result cache entries.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Query};
use super::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ClearParams {
    /// A module name (as steps refer to it) or a `sha256:` digest; without
    /// it, every entry.
    #[param(min_length = 1, max_length = 200)]
    module: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CacheCleared {
    /// How many entries were dropped.
    deleted: u64,
}

/// Drop the step result cache's entries of a module, or all of them:
/// later runs of `cache:` steps run their modules again.
#[utoipa::path(delete, path = "/v1/cache", params(ClearParams),
    responses((status = 200, body = CacheCleared), (status = 400), (status = 422)))]
pub async fn clear_cache(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ClearParams>,
) -> Result<axum::Json<CacheCleared>, ApiError> {
    let deleted = state.service.clear_cache(params.module.as_deref()).await?;
    Ok(axum::Json(CacheCleared { deleted }))
}
