//! `POST /v1/events` and `GET /v1/events`: events posted to the engine,
//! which resume the waits of their topic and start the runs of its
//! `on_event` triggers; `GET /v1/schedules`: the schedule triggers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, Json, Query};
use super::page;
use super::AppState;
use crate::service::triggers::ScheduleView;
use crate::store::events::StoredEvent;
use crate::workflow::validate::MAX_TOPIC_CHARS;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEvent {
    /// 1 to 256 characters, no whitespace or control characters (`order.approved`).
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$")]
    topic: String,
    /// Any JSON: the output of each wait step it resumes, the input of
    /// each run its `on_event` triggers start (default null).
    #[serde(default)]
    #[schema(schema_with = any_json)]
    data: Value,
    /// Posting twice with the same key stores the event once.
    #[schema(min_length = 1, max_length = 200)]
    idempotency_key: Option<String>,
}

/// Any JSON value.
pub(crate) fn any_json() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .build()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPosted {
    id: String,
    /// `false` when an event with the same idempotency key answered.
    created: bool,
}

/// Post an event: stored (once per idempotency key) before the answer, and
/// handed to every run with a step waiting for its topic; a wait that
/// starts later finds it too (within the retention, `--event-retention`).
#[utoipa::path(post, path = "/v1/events", params(("traceparent" = Option<String>, Header, description = "W3C Trace Context: runs the event starts are this span's children, and waits it resumes link to it (docs/traces.md)")), request_body = PostEvent,
    responses((status = 202, body = EventPosted), (status = 400), (status = 413), (status = 415), (status = 422)))]
pub async fn post_event(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Json(event): Json<PostEvent>,
) -> Result<Response, ApiError> {
    let traceparent = crate::telemetry::ids::from_headers(&headers);
    let posted = state
        .service
        .post_event(
            &event.topic,
            &event.data,
            event.idempotency_key.as_deref(),
            traceparent.as_deref(),
        )
        .await?;
    let body = EventPosted {
        id: posted.id,
        created: posted.created,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct EventListParams {
    /// Only events of this topic.
    #[param(min_length = 1, max_length = 256)]
    topic: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// One page of events, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next page; absent on the last one.
    next_cursor: Option<String>,
}

/// Events newest first, each with the runs it resumed and started.
#[utoipa::path(get, path = "/v1/events", params(EventListParams), responses((status = 200, body = EventList), (status = 400)))]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    Query(params): Query<EventListParams>,
) -> Result<axum::Json<EventList>, ApiError> {
    let limit = page::limit(params.limit)?;
    if let Some(topic) = &params.topic {
        if topic.is_empty() || topic.chars().count() > MAX_TOPIC_CHARS {
            return Err(ApiError::bad_request(
                format!("topic must be 1 to {MAX_TOPIC_CHARS} characters"),
                Some("topic"),
            ));
        }
    }
    let before = match params.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            cursor
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("cursor is not one this server gave", Some("cursor")))?,
        ),
    };
    let events = state
        .service
        .list_events(params.topic.as_deref(), before, limit + 1)
        .await?;
    let (events, next_cursor) = page::cut(events, limit, |e| e.seq.to_string());
    Ok(axum::Json(EventList { events, next_cursor }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    schedules: Vec<ScheduleView>,
}

/// Every schedule trigger of the workflows' latest versions, with its next
/// tick (`next_fire`, RFC 3339 in its time zone) and the run its last tick
/// started (`last_run`).
#[utoipa::path(get, path = "/v1/schedules", responses((status = 200, body = ScheduleList)))]
pub async fn list_schedules(State(state): State<Arc<AppState>>) -> Result<axum::Json<ScheduleList>, ApiError> {
    Ok(axum::Json(ScheduleList {
        schedules: state.service.list_schedules().await?,
    }))
}
