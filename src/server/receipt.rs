//! Receipts and chains over HTTP: `GET /v1/runs/{id}/receipt` (a signed
//! DSSE envelope), `GET /v1/runs/{id}/verify` (the stored chain checked)
//! and `GET /v1/keys` (every node's receipt key).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, Path};
use super::AppState;
use crate::run::chain::Checked;
use crate::signing::Envelope;
use crate::store::chain::NodeKey;

/// The media type of a DSSE envelope in JSON.
pub const DSSE_JSON: &str = "application/vnd.dsse.envelope.v1+json";

/// The signed receipt of an ended run: a DSSE envelope whose payload
/// (`application/vnd.in-toto+json`) is an in-toto Statement v1 with the
/// run's output as its subject.
#[utoipa::path(get, path = "/v1/runs/{id}/receipt",
    responses((status = 200, content_type = "application/vnd.dsse.envelope.v1+json", body = Envelope, description = "the receipt"),
        (status = 404), (status = 409, description = "The run has not ended (`run-not-ended`) or its stored history does not chain (`chain-broken`)")))]
pub async fn run_receipt(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let envelope = state.service.receipt(&id).await?;
    let body = serde_json::to_vec_pretty(&envelope).expect("an envelope serializes");
    Ok(([(header::CONTENT_TYPE, DSSE_JSON)], body).into_response())
}

/// A run's stored chain, recomputed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChainCheck {
    pub run: String,
    /// Every event carries a hash and each chains to the one before.
    pub ok: bool,
    #[serde(flatten)]
    pub checked: Checked,
}

/// Recompute a run's hash chain from its stored events and name the
/// first broken link.
#[utoipa::path(get, path = "/v1/runs/{id}/verify",
    responses((status = 200, body = ChainCheck), (status = 404)))]
pub async fn verify_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ChainCheck>, ApiError> {
    let checked = state.service.verify_chain(&id).await?;
    Ok(Json(ChainCheck {
        ok: checked.ok(),
        run: id,
        checked,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<PublishedKey>,
}

/// A node's receipt key, raw (hex) and as a PEM public key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishedKey {
    #[serde(flatten)]
    pub key: NodeKey,
    pub public_key_pem: String,
}

/// Every node's receipt key (kept after a node stops, since its receipts
/// outlive it).
#[utoipa::path(get, path = "/v1/keys", responses((status = 200, body = KeyList)))]
pub async fn list_keys(State(state): State<Arc<AppState>>) -> Result<Json<KeyList>, ApiError> {
    let keys = state.service.keys().await?;
    let keys = keys
        .into_iter()
        .map(|key| {
            let public_key_pem = crate::signing::parse_public(&key.public_key)
                .map(|raw| crate::signing::public_pem(&raw))
                .unwrap_or_default();
            PublishedKey { key, public_key_pem }
        })
        .collect();
    Ok(Json(KeyList { keys }))
}
