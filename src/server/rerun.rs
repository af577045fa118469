//! `POST /v1/runs/{id}/rerun`: a new run of an ended one from a step.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::api::{parse_wait, WaitParams};
use super::error::{ApiError, Created, Json, Path, Query};
use super::AppState;
use crate::service::view::RunView;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunRun {
    /// Run this step and every step downstream of it again.
    from: Option<String>,
    /// `true`: run every failed step and every step downstream of one again.
    failed: Option<bool>,
    /// A new input (default: the run's); steps reading `inputs` run again.
    input: Option<Value>,
}

/// `{"from": "<step>"}` or `{"failed": true}`, each with an optional `input`.
impl utoipa::PartialSchema for RerunRun {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let input = || {
            // null, like leaving it out, keeps the run's input.
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::Object,
                    Type::Null,
                ]))
                .description(Some(
                    "A new input (default, or null: the run's); steps reading `inputs` run again.",
                ))
        };
        let from = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "from",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .description(Some("Run this step and every step downstream of it again.")),
            )
            .property("input", input())
            .required("from")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let failed = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "failed",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true]))
                    .description(Some("Run every failed step and every step downstream of one again.")),
            )
            .property("input", input())
            .required("failed")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new().item(from).item(failed).into()
    }
}

impl utoipa::ToSchema for RerunRun {}

/// Re-run an ended run from a step (`from`) or from every failed step
/// (`failed: true`): a new run of the same pinned version, linked by
/// `rerun_of`, that reuses the recorded outputs of every other step that
/// succeeded.
#[utoipa::path(post, path = "/v1/runs/{id}/rerun", params(WaitParams), request_body = RerunRun,
    responses((status = 201, body = RunView), (status = 400), (status = 404), (status = 409), (status = 413), (status = 415), (status = 422), (status = 429), (status = 503)))]
pub async fn rerun_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(params): Query<WaitParams>,
    caller: Option<axum::Extension<crate::service::Caller>>,
    Json(request): Json<RerunRun>,
) -> Result<Response, ApiError> {
    use crate::service::rerun::{Rerun, RerunFrom};
    use crate::service::RunError;
    let wait = parse_wait(params.wait.as_deref())?;
    let from = match (request.from, request.failed) {
        (Some(step), None | Some(false)) => RerunFrom::Step(step),
        (None, Some(true)) => RerunFrom::Failed,
        (Some(_), Some(true)) => {
            return Err(RunError::invalid("from", "give either `from` (a step id) or `failed: true`, not both").into())
        }
        (None, _) => {
            return Err(RunError::invalid("from", "give `from` (a step id) or `failed: true`").into());
        }
    };
    let rerun = Rerun {
        from,
        input: request.input,
        caller: caller.map(|axum::Extension(c)| c),
    };
    let (started, view) = state.service.rerun(&id, rerun, wait).await?;
    let view = match view {
        Some(view) => view,
        None => state.service.get(&started.run.id).await?,
    };
    Ok(Created(serde_json::to_value(view).expect("serializable")).into_response())
}
