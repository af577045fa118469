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
        super::runs::list_runs,
        super::api::get_run,
        super::api::cancel_run,
        super::rerun::rerun_run,
        super::upgrade::upgrade_run,
        super::upgrade::check_workflow,
        super::bundle::run_bundle,
        super::receipt::run_receipt,
        super::receipt::verify_run,
        super::receipt::list_keys,
        super::events::run_events,
        super::posted::post_event,
        super::posted::list_events,
        super::posted::list_schedules,
        super::hooks::deliver,
        super::hooks::list_hooks,
        super::secrets::put_secret,
        super::secrets::list_secrets,
        super::secrets::delete_secret,
        super::cache::clear_cache,
        super::usage::get_usage,
        super::nodes::list_nodes,
    ),
    components(schemas(super::error::Problem, crate::workflow::ValidationError)),
    modifiers(&BearerAuth, &Problems)
)]
pub struct ApiDoc;

/// Every error answer is `application/problem+json` with the `Problem`
/// schema: each route's listed errors get that content, and every route
/// lists 401 (when the server has tokens) and 500.
struct Problems;

impl utoipa::Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, response) in responses.iter_mut() {
                    if status.starts_with('4') || status.starts_with('5') {
                        let description = match response {
                            RefOr::T(r) if !r.description.is_empty() => r.description.clone(),
                            _ => describe(status).to_string(),
                        };
                        *response = RefOr::T(problem(&description));
                    }
                }
                for status in ["401", "500"] {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(problem(describe(status))));
                }
            }
        }
    }
}

fn describe(status: &str) -> &'static str {
    match status {
        "400" => "A malformed body, query string or path parameter",
        "401" => "A bearer token is required (when the server has tokens)",
        "404" => "No such resource",
        "409" => "The request conflicts with the resource's state",
        "413" => "The body is larger than the server accepts",
        "415" => "The body's content type is not accepted",
        "422" => "A well-formed request whose values are wrong, with the field at fault",
        "429" => {
            "The token's daily fuel budget is spent (problem `budget-exhausted`, Retry-After: seconds to 00:00 UTC)"
        }
        "503" => "The server is shutting down",
        _ => "An internal error (no detail is shown)",
    }
}

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
