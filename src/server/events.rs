//! `GET /v1/runs/{id}/events`: a run's events as Server-Sent Events. Stored
//! events come first (after `Last-Event-ID` when the client resumes), then
//! live ones; the stream ends after the run's final event.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;

use super::error::{ApiError, Path};
use super::AppState;

/// Follow a run's events (SSE: `id` is the event's seq, `event` its type).
#[utoipa::path(get, path = "/v1/runs/{id}/events", responses((status = 200, content_type = "text/event-stream"), (status = 404)))]
pub async fn run_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last = match headers.get("last-event-id").map(|v| v.to_str().map(str::trim)) {
        None => 0,
        Some(Ok(text)) => text
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be an event seq number", Some("Last-Event-ID")))?,
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "Last-Event-ID is not text",
                Some("Last-Event-ID"),
            ))
        }
    };
    let following = state.service.follow_events(&id, Some(last)).await?;
    let shutdown = state.shutdown.clone();
    let stream = futures_util::stream::unfold(following, move |mut following| {
        let shutdown = shutdown.clone();
        async move {
            let event = tokio::select! {
                event = following.next() => event?,
                _ = shutdown.cancelled() => return None,
            };
            let sse = SseEvent::default()
                .id(event.seq.to_string())
                .event(event.kind.name())
                .data(serde_json::to_string(&event).unwrap_or_default());
            Some((Ok(sse), following))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
