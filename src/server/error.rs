//! API errors as `application/problem+json` (RFC 9457): a stable `type` per
//! kind, the failing `field` where there is one, and never internal detail.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::RunError;
use crate::workflow::ValidationError;

/// Where problem types live; each kind appends its name.
pub const PROBLEM_BASE: &str = "https://sandstep.dev/problems/";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or a parameter is malformed.
    #[error("bad request: {detail}")]
    BadRequest { detail: String, field: Option<String> },
    /// 401: a token is required and was missing or wrong.
    #[error("unauthorized")]
    Unauthorized,
    /// 401: a webhook request's signature is missing or wrong.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// 404
    #[error("{0} not found")]
    NotFound(String),
    /// 409: the request conflicts with the resource's state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 409 with its own problem type.
    #[error("{kind}: {detail}")]
    Refused { kind: &'static str, detail: String },
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// 415
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 422: a definition or a request with its located errors.
    #[error("{kind}: {} error(s)", errors.len())]
    Invalid {
        kind: &'static str,
        detail: String,
        field: Option<String>,
        errors: Vec<ValidationError>,
    },
    /// 422: a run's input, a module, or another semantically wrong value.
    #[error("{kind}: {detail}")]
    Unprocessable {
        kind: &'static str,
        detail: String,
        field: Option<String>,
    },
    /// 429: the token's daily fuel budget is spent.
    #[error("budget exhausted: {0}")]
    BudgetExhausted(String),
    /// 500: logged here, shown to nobody.
    #[error("internal: {0}")]
    Internal(String),
    /// 503: the server is shutting down.
    #[error("the server is shutting down")]
    Unavailable,
    /// 503: the server lacks a setting the request needs.
    #[error("not configured: {0}")]
    NotConfigured(String),
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::NotFound(what) => ApiError::NotFound(what),
            RunError::WorkflowMissing(name) => ApiError::NotFound(format!("workflow {name}")),
            RunError::Conflict(detail) => ApiError::Conflict(detail),
            RunError::BadSignature(detail) => ApiError::BadSignature(detail),
            RunError::UnsupportedMedia(detail) => ApiError::UnsupportedMediaType(detail),
            RunError::Refused { kind, message } => ApiError::Refused { kind, detail: message },
            RunError::InvalidInput { field, errors } => {
                let kind = match field.as_str() {
                    "input" | "runs" => "invalid-input",
                    "name" | "tag" => "invalid-name",
                    _ => "invalid-body",
                };
                let detail = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ");
                if errors.len() == 1 && errors[0].location == field {
                    ApiError::unprocessable(kind, detail, Some(&field))
                } else {
                    ApiError::Invalid {
                        kind,
                        detail,
                        field: Some(field),
                        errors,
                    }
                }
            }
            RunError::InvalidWorkflow(errors) => ApiError::Invalid {
                kind: "invalid-workflow",
                detail: format!(
                    "{} error{} in the definition",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
                field: errors.first().map(|e| e.location.clone()),
                errors,
            },
            RunError::ModuleMissing { field, message } if field == "body" => {
                ApiError::unprocessable("invalid-module", message, Some("body"))
            }
            RunError::ModuleMissing { field, message } => {
                let field = (!field.is_empty()).then_some(field);
                ApiError::unprocessable("module-not-found", message, field.as_deref())
            }
            RunError::NameMismatch(detail) => ApiError::unprocessable("name-mismatch", detail, Some("name")),
            RunError::Unavailable => ApiError::Unavailable,
            RunError::BudgetExhausted(detail) => ApiError::BudgetExhausted(detail),
            RunError::NotConfigured(detail) => ApiError::NotConfigured(detail),
            RunError::Store(error) => ApiError::Internal(error.to_string()),
            RunError::Internal(error) => ApiError::Internal(error),
        }
    }
}

/// An error answer (RFC 9457 problem details).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable: `https://sandstep.dev/problems/<kind>` (`not-found`, `invalid-input`, ...).
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    /// What is wrong, for people; never internal detail.
    detail: String,
    /// The request field at fault, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// Every located error (definitions, batch items).
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<ValidationError>>,
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>, field: Option<&str>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            field: field.map(Into::into),
        }
    }

    pub fn unprocessable(kind: &'static str, detail: impl Into<String>, field: Option<&str>) -> Self {
        ApiError::Unprocessable {
            kind,
            detail: detail.into(),
            field: field.map(Into::into),
        }
    }
}

impl ApiError {
    /// The status, problem type and title of each kind.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::BadSignature(_) => (StatusCode::UNAUTHORIZED, "bad-signature", "Unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::Refused { kind, .. } => (StatusCode::CONFLICT, kind, "Conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Invalid { kind, .. } if *kind == "invalid-workflow" => {
                (StatusCode::UNPROCESSABLE_ENTITY, kind, "Invalid workflow definition")
            }
            ApiError::Invalid { kind, .. } | ApiError::Unprocessable { kind, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, kind, "Unprocessable request")
            }
            ApiError::BudgetExhausted(_) => (StatusCode::TOO_MANY_REQUESTS, "budget-exhausted", "Budget exhausted"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Unavailable"),
            ApiError::NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "not-configured", "Not configured"),
        }
    }

    /// What the problem says of this error: its detail, the field at fault
    /// and the located errors. An internal error is logged, not shown.
    fn details(self) -> (String, Option<String>, Option<Vec<ValidationError>>) {
        match self {
            ApiError::BadRequest { detail, field } | ApiError::Unprocessable { detail, field, .. } => {
                (detail, field, None)
            }
            ApiError::Invalid {
                detail, field, errors, ..
            } => (detail, field, Some(errors)),
            ApiError::NotFound(detail)
            | ApiError::Conflict(detail)
            | ApiError::Refused { detail, .. }
            | ApiError::PayloadTooLarge(detail)
            | ApiError::UnsupportedMediaType(detail)
            | ApiError::BudgetExhausted(detail)
            | ApiError::BadSignature(detail)
            | ApiError::NotConfigured(detail) => (detail, None, None),
            ApiError::Unauthorized => (
                "a valid bearer token is required (Authorization: Bearer <token>)".into(),
                None,
                None,
            ),
            ApiError::MethodNotAllowed => ("this route does not take that method".into(), None, None),
            ApiError::Internal(error) => {
                tracing::error!(%error, "internal error");
                ("an internal error occurred".into(), None, None)
            }
            ApiError::Unavailable => ("the server is shutting down".into(), None, None),
        }
    }
}

impl ApiError {
    /// The problem details this error answers (an MCP tool's error carries
    /// them too).
    pub fn problem(self) -> Problem {
        let (status, kind, title) = self.kind();
        let (detail, field, errors) = self.details();
        Problem {
            kind: format!("{PROBLEM_BASE}{kind}"),
            title,
            status: status.as_u16(),
            detail,
            field,
            errors,
        }
    }
}

impl Problem {
    /// What is wrong, for people.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = matches!(self, ApiError::BudgetExhausted(_)).then(seconds_to_utc_midnight);
        let status = self.kind().0;
        let body = self.problem();
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/problem+json".parse().expect("valid header"),
        );
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Seconds until the next UTC day begins (when daily budgets renew).
fn seconds_to_utc_midnight() -> u64 {
    let now = crate::run::event::now_ms() / 1000;
    86_400 - now % 86_400
}

/// A query string whose rejections are problems too (400, `bad-request`).
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text(), None)),
        }
    }
}

/// Path parameters whose rejections are problems too (400, `bad-request`).
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text(), None)),
        }
    }
}

/// A JSON body whose rejections are problems too.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(bytes) => bytes_rejection(bytes),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(other.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::unprocessable("invalid-body", e.body_text(), None),
        other => ApiError::bad_request(other.body_text(), None),
    }
}

pub fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the body is larger than this server accepts".into())
    } else {
        ApiError::bad_request(rejection.body_text(), None)
    }
}

impl IntoResponse for crate::server::error::Created {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, axum::Json(self.0)).into_response()
    }
}

/// A `201 Created` JSON answer.
pub struct Created(pub serde_json::Value);
