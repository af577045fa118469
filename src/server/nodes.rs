//! `GET /v1/nodes`: the live nodes serving this store.

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct NodeView {
    /// The node's id (kept in its data directory's `node-id`).
    id: String,
    /// The API address it listens on (`127.0.0.1:8080`), once it listens.
    listen: Option<String>,
    /// Its last heartbeat, RFC 3339 (UTC).
    last_seen: String,
    /// Unfinished runs it holds under a live lease.
    runs_owned: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NodesAnswer {
    /// By id; a node whose lease ended (stopped, killed, paused) is gone.
    nodes: Vec<NodeView>,
}

/// The nodes serving this store whose lease has not ended: each heartbeat
/// (a third of `--lease`) keeps a node listed, a clean stop removes it.
#[utoipa::path(get, path = "/v1/nodes", responses((status = 200, body = NodesAnswer)))]
pub async fn list_nodes(State(state): State<Arc<AppState>>) -> Result<axum::Json<NodesAnswer>, ApiError> {
    let nodes = state
        .service
        .nodes()
        .await?
        .into_iter()
        .map(|n| NodeView {
            id: n.id,
            listen: n.listen,
            last_seen: crate::service::view::rfc3339(n.last_seen_ms.max(0) as u64),
            runs_owned: n.runs_owned,
        })
        .collect();
    Ok(axum::Json(NodesAnswer { nodes }))
}
