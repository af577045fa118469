//! `GET /v1/runs/{id}/events`: a run's events as Server-Sent Events. Stored
//! events come first (after `Last-Event-ID` when the client resumes), then
//! live ones; the stream ends after the run's final event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;

use super::error::{ApiError, Path};
use super::AppState;
use crate::run::Event;
use crate::service::watch::Watch;
use crate::service::Service;

struct Follow {
    service: Arc<Service>,
    run_id: String,
    live: Watch,
    last: u64,
    buffer: VecDeque<Event>,
    done: bool,
    shutdown: tokio_util::sync::CancellationToken,
}

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
    // Watch before reading what is stored, so nothing falls in between.
    let (live, row) = state.service.watch(&id).await?;
    let stored = state.service.events(&id, last).await?;
    let ended = row.is_ended();
    let follow = Follow {
        service: state.service.clone(),
        run_id: id,
        live,
        last,
        done: ended && stored.is_empty(),
        buffer: stored.into(),
        shutdown: state.shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.buffer.pop_front() {
                if event.seq <= f.last {
                    continue;
                }
                f.last = event.seq;
                f.done |= event.kind.is_final();
                let sse = SseEvent::default()
                    .id(event.seq.to_string())
                    .event(event.kind.name())
                    .data(serde_json::to_string(&event).unwrap_or_default());
                return Some((Ok(sse), f));
            }
            if f.done {
                return None;
            }
            let received = tokio::select! {
                received = f.live.next() => received,
                _ = f.shutdown.cancelled() => return None,
            };
            match received {
                Ok(Some(event)) => f.buffer.push_back(event),
                // Fell behind: what was missed is stored.
                Err(_) => match f.service.events(&f.run_id, f.last).await {
                    Ok(events) => f.buffer.extend(events),
                    Err(_) => return None,
                },
                Ok(None) => match f.service.events(&f.run_id, f.last).await {
                    // The run ended: anything not yet sent is stored.
                    Ok(events) if !events.is_empty() => f.buffer.extend(events),
                    _ => return None,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
