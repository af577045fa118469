//! `POST /hooks/{name}`: a webhook delivery, authenticated by its
//! signature (outside `/v1`'s bearer tokens); `GET /v1/hooks`: the hooks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{bytes_rejection, ApiError, Path};
use super::AppState;
use crate::service::hooks::{Delivered, HookView};

/// What an accepted delivery stored: the run it started or the event it
/// posted (a redelivery answers the same one).
#[derive(Serialize, utoipa::ToSchema)]
pub struct HookDelivered {
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
}

/// Deliver to a webhook: the body is the sender's own (JSON; a form as an
/// object; text as a string), signed as the hook's `signature` says. The
/// signature is checked over the raw bytes before anything is parsed or
/// stored; a delivery id seen before answers the same run or event.
#[utoipa::path(post, path = "/hooks/{name}",
    params(("name" = String, Path, description = "The hook's name (`webhook:` in a trigger)"),
        ("traceparent" = Option<String>, Header, description = "W3C Trace Context: the run it starts is this span's child (docs/traces.md)")),
    request_body(description = "The sender's body", content(
        (serde_json::Value = "application/json"),
        (serde_json::Value = "application/x-www-form-urlencoded"),
        (String = "text/plain"))),
    responses((status = 202, body = HookDelivered), (status = 400), (status = 401), (status = 404),
        (status = 413), (status = 415), (status = 422)))]
pub async fn deliver(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(bytes_rejection)?;
    let delivered = state.service.deliver_hook(&name, &headers, &body).await?;
    let answer = match delivered {
        Delivered::Run(id) => HookDelivered {
            run_id: Some(id),
            event_id: None,
        },
        Delivered::Event(id) => HookDelivered {
            run_id: None,
            event_id: Some(id),
        },
    };
    Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HookList {
    hooks: Vec<HookView>,
}

/// Every webhook of the workflows' latest versions, with its workflow,
/// signature scheme and last accepted delivery.
#[utoipa::path(get, path = "/v1/hooks", responses((status = 200, body = HookList)))]
pub async fn list_hooks(State(state): State<Arc<AppState>>) -> Result<axum::Json<HookList>, ApiError> {
    Ok(axum::Json(HookList {
        hooks: state.service.list_hooks().await?,
    }))
}
