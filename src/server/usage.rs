//! `GET /v1/usage?day=`: the runs started on a UTC day and the fuel their
//! attempts consumed, per token and workflow.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Query};
use super::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UsageParams {
    /// A UTC day as `YYYY-MM-DD`; default today.
    #[param(value_type = Option<String>, format = Date)]
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
    /// Fuel consumed by the attempts of those runs so far (a run that goes
    /// on past midnight counts to the day it started); sub-workflow runs
    /// count under their root run's token.
    fuel: u64,
    /// Runs started that day.
    runs: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageAnswer {
    /// By token, then workflow.
    usage: Vec<UsageRow>,
}

/// What the runs each token started on one day consumed: the figures a
/// platform bills by, and the ones daily fuel budgets
/// (`name:token:fuel_per_day` in the tokens file) are checked against.
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
