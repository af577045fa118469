//! `GET /v1/usage?day=`: runs started and fuel consumed per token,
//! workflow and UTC day.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Query};
use super::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UsageParams {
    /// A UTC day as `YYYY-MM-DD`; default today.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    day: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// The API token's name (never the token); `null` for runs started
    /// without one (a server without tokens, triggers).
    token: Option<String>,
    workflow: String,
    /// `YYYY-MM-DD`, UTC.
    day: String,
    /// Fuel consumed that day by the attempts of runs started with the token
    /// (and their sub-workflows' runs).
    fuel: u64,
    /// Runs started that day.
    runs: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageAnswer {
    /// By token, then workflow.
    usage: Vec<UsageRow>,
}

/// What each token's runs consumed on one day: the figures a platform bills
/// by, and the ones daily fuel budgets (`name:token:fuel_per_day` in the
/// tokens file) are checked against.
#[utoipa::path(get, path = "/v1/usage", params(UsageParams),
    responses((status = 200, body = UsageAnswer), (status = 400), (status = 422)))]
pub async fn get_usage(
    State(state): State<Arc<AppState>>,
    Query(params): Query<UsageParams>,
) -> Result<axum::Json<UsageAnswer>, ApiError> {
    let rows = state.service.usage(params.day.as_deref()).await?;
    let usage = rows
        .into_iter()
        .map(|u| UsageRow {
            token: (!u.token.is_empty()).then_some(u.token),
            workflow: u.workflow,
            day: u.day,
            fuel: u.fuel,
            runs: u.runs,
        })
        .collect();
    Ok(axum::Json(UsageAnswer { usage }))
}
