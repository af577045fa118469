//! `/healthz`, `/metrics` and `/v1/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

use super::error::ApiError;
use super::AppState;

pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    state.service.ping().await?;
    Ok("ok\n")
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let body = state.service.metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Sandstep", description = "Workflows whose steps are untrusted WebAssembly."),
    paths(
        super::api::upload_module,
        super::api::list_modules,
        super::api::get_module,
        super::api::delete_module,
        super::api::put_workflow,
        super::api::list_workflows,
        super::api::get_workflow,
        super::api::start_run,
        super::api::start_batch,
        super::api::list_runs,
        super::api::get_run,
        super::api::cancel_run,
        super::events::run_events,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
