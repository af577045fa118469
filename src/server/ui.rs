//! The web UI at `/ui`: plain ES modules and a stylesheet from `ui/`,
//! embedded in the binary (no build step, no network at run time). The
//! pages call only the public `/v1` API, with the tab's token; the assets
//! themselves hold no data, so they are served without one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Path};

/// Every asset: its name under `/ui/`, content type and text.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/style.css"),
    ),
    ("app.js", JS, include_str!("../../ui/app.js")),
    ("api.js", JS, include_str!("../../ui/api.js")),
    ("dom.js", JS, include_str!("../../ui/dom.js")),
    ("runs.js", JS, include_str!("../../ui/runs.js")),
    ("run.js", JS, include_str!("../../ui/run.js")),
    ("dag.js", JS, include_str!("../../ui/dag.js")),
    ("step.js", JS, include_str!("../../ui/step.js")),
    ("workflows.js", JS, include_str!("../../ui/workflows.js")),
    ("modules.js", JS, include_str!("../../ui/modules.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// Scripts and styles from this origin only, calls to this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui` (and `/ui/`): the page.
pub async fn index() -> Response {
    asset_response("index.html").unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
}

/// `GET /ui/{file}`: one of the page's scripts or its stylesheet.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    asset_response(&file).ok_or_else(|| ApiError::NotFound(format!("no UI file {file}")))
}

/// `GET /`: the UI.
pub async fn root() -> impl IntoResponse {
    axum::response::Redirect::temporary("/ui")
}

fn asset_response(name: &str) -> Option<Response> {
    let (_, content_type, text) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
    let mut response = (*text).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Some(response)
}
