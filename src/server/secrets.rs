//! `PUT`/`DELETE /v1/secrets/{name}` and `GET /v1/secrets`: secrets are
//! written and removed here, and listed by name; no route ever answers a
//! value.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Json, Path};
use super::AppState;
use crate::store::secrets::SecretEntry;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value, 1 byte to 64 KiB. Templates name it `{{ secrets.NAME }}`.
    #[schema(min_length = 1, max_length = 65536)]
    value: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretList {
    /// Stored secrets by name; values are never answered.
    secrets: Vec<SecretEntry>,
}

/// Set a secret (sealed with the server's `SANDSTEP_SECRETS_KEY`). Runs
/// started from now on see the new value.
#[utoipa::path(put, path = "/v1/secrets/{name}", request_body = PutSecret,
    params(("name" = String, Path, description = "Letters, digits and underscores, not starting with a digit", pattern = "^[A-Za-z_][A-Za-z0-9_]{0,127}$")),
    responses((status = 204), (status = 400), (status = 413), (status = 415), (status = 422), (status = 503)))]
pub async fn put_secret(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Json(body): Json<PutSecret>,
) -> Result<StatusCode, ApiError> {
    state.service.put_secret(&name, &body.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The stored secrets' names and update times.
#[utoipa::path(get, path = "/v1/secrets", responses((status = 200, body = SecretList)))]
pub async fn list_secrets(State(state): State<Arc<AppState>>) -> Result<axum::Json<SecretList>, ApiError> {
    Ok(axum::Json(SecretList {
        secrets: state.service.list_secrets().await?,
    }))
}

/// Remove a stored secret. Runs already started keep the value they had.
#[utoipa::path(delete, path = "/v1/secrets/{name}", responses((status = 204), (status = 404)))]
pub async fn delete_secret(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.service.delete_secret(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
