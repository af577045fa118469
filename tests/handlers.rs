//! Each route's error mapping, through the router without a socket
//! (`tower::ServiceExt::oneshot`): every client mistake and every missing
//! resource is a problem+json answer with its stable type.

use axum::body::Body;
use axum::http::{Method, Request};
use sandstep::server::{self, ServerConfig};
use serde_json::Value;
use tower::ServiceExt as _;

async fn call(app: &axum::Router, method: Method, uri: &str, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(kind) = content_type {
        request = request.header("content-type", kind);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(kind, "application/problem+json", "{uri}: {status} {body}");
    }
    (status, body)
}

fn problem(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("")
}

/// Method, path, content type, body; expected status and problem type.
type Case = (
    Method,
    &'static str,
    Option<&'static str>,
    &'static str,
    u16,
    &'static str,
);

const JSON: Option<&str> = Some("application/json");
const YAML: Option<&str> = Some("application/yaml");
const WASM: Option<&str> = Some("application/wasm");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_its_errors_as_problems() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.store = crate::support::store::location(dir.path());
    let state = server::start(&config).await.unwrap();
    let app = server::router(state, &config);
    let sleepy = "name: x\nsteps:\n  - { id: a, sleep: 20s }\n";
    let cases: &[Case] = &[
        (Method::GET, "/v1/runs/nope", None, "", 404, "not-found"),
        (Method::GET, "/v1/runs/nope/events", None, "", 404, "not-found"),
        (Method::POST, "/v1/runs/nope/cancel", JSON, "{}", 404, "not-found"),
        (
            Method::POST,
            "/v1/runs/nope/cancel?wait=soon",
            JSON,
            "{}",
            400,
            "bad-request",
        ),
        (Method::GET, "/v1/runs?status=bogus", None, "", 400, "bad-request"),
        (Method::GET, "/v1/runs?limit=0", None, "", 400, "bad-request"),
        (Method::GET, "/v1/workflows/nope", None, "", 404, "not-found"),
        (
            Method::PUT,
            "/v1/workflows/x",
            Some("text/html"),
            sleepy,
            415,
            "unsupported-media-type",
        ),
        (Method::PUT, "/v1/workflows/y", YAML, sleepy, 422, "name-mismatch"),
        (
            Method::PUT,
            "/v1/workflows/x",
            YAML,
            "name: x\nsteps:\n  - { id: a, module: nowhere }\n",
            422,
            "invalid-workflow",
        ),
        (Method::POST, "/v1/workflows/nope/runs", JSON, "{}", 404, "not-found"),
        (
            Method::POST,
            "/v1/workflows/nope/runs",
            JSON,
            "{oops",
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/workflows/nope/runs",
            None,
            "{}",
            415,
            "unsupported-media-type",
        ),
        (
            Method::POST,
            "/v1/workflows/nope/runs?wait=forever",
            JSON,
            "{}",
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/workflows/nope/runs?wait=0",
            JSON,
            "{}",
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/workflows/nope/runs/batch",
            JSON,
            r#"{"runs": [{}]}"#,
            404,
            "not-found",
        ),
        (
            Method::POST,
            "/v1/workflows/nope/runs/batch",
            JSON,
            r#"{"rnus": []}"#,
            422,
            "invalid-body",
        ),
        (
            Method::POST,
            "/v1/modules?name=x",
            WASM,
            "not wasm",
            422,
            "invalid-module",
        ),
        (Method::POST, "/v1/modules", WASM, "not wasm", 400, "bad-request"),
        (
            Method::POST,
            "/v1/modules?name=Bad",
            WASM,
            "not wasm",
            422,
            "invalid-name",
        ),
        (
            Method::POST,
            "/v1/modules?name=x",
            JSON,
            "{}",
            415,
            "unsupported-media-type",
        ),
        (Method::GET, "/v1/modules/nope", None, "", 404, "not-found"),
        (Method::DELETE, "/v1/modules/nope", None, "", 404, "not-found"),
        (Method::GET, "/nowhere", None, "", 404, "not-found"),
        (Method::GET, "/v1/runs?limit=many", None, "", 400, "bad-request"),
        (
            Method::GET,
            "/v1/workflows/x?version=latest",
            None,
            "",
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/workflows/x/runs?wait=1s&wait=2s",
            JSON,
            "{}",
            400,
            "bad-request",
        ),
        (Method::GET, "/v1/runs/%FF%FE", None, "", 400, "bad-request"),
        (Method::DELETE, "/v1/runs", None, "", 405, "method-not-allowed"),
        (Method::PUT, "/v1/runs/nope", JSON, "{}", 405, "method-not-allowed"),
        (Method::GET, "/v1/workflows/x/runs", None, "", 405, "method-not-allowed"),
    ];
    for (method, uri, kind, body, status, expected) in cases {
        let (got, answer) = call(&app, method.clone(), uri, *kind, body).await;
        assert_eq!(
            (got, problem(&answer)),
            (*status, *expected),
            "{method} {uri}: {answer}"
        );
        assert!(
            !answer["detail"].as_str().unwrap_or("").contains("database"),
            "{uri}: no internals in {answer}"
        );
    }

    let (status, _) = call(&app, Method::PUT, "/v1/workflows/x", YAML, sleepy).await;
    assert_eq!(status, 201);
    let (status, body) = call(&app, Method::POST, "/v1/workflows/x/runs", JSON, r#"{"input": 5}"#).await;
    assert_eq!(
        (status, problem(&body), &body["field"]),
        (422, "invalid-input", &Value::from("input"))
    );
    let (status, run) = call(&app, Method::POST, "/v1/workflows/x/runs", JSON, "{}").await;
    assert_eq!(status, 201);
    let cancel = format!("/v1/runs/{}/cancel", run["id"].as_str().unwrap());
    let (status, canceled) = call(&app, Method::POST, &cancel, JSON, "{}").await;
    assert_eq!((status, canceled["status"].as_str()), (202, Some("canceled")));
    let (status, body) = call(&app, Method::POST, &cancel, JSON, "{}").await;
    assert_eq!((status, problem(&body)), (409, "conflict"));
}

/// The OpenAPI document says what the routes do: every error answer of
/// every route is problem+json with the `Problem` schema, and the lists'
/// success schemas name the fields the routes answer with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.store = crate::support::store::location(dir.path());
    let state = server::start(&config).await.unwrap();
    let app = server::router(state, &config);
    let (status, doc) = call(&app, Method::GET, "/v1/openapi.json", None, "").await;
    assert_eq!(status, 200);
    let problem_ref = Value::from("#/components/schemas/Problem");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let responses = operation["responses"].as_object().unwrap();
            for required in ["401", "500"] {
                assert!(responses.contains_key(required), "{method} {path} lists no {required}");
            }
            for (code, response) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"], problem_ref,
                        "{method} {path} {code}: {response}"
                    );
                }
            }
        }
    }
    assert!(operations >= 13, "{operations} operations");

    let schema_keys = |path: &str| -> Vec<String> {
        let reference = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("GET {path} has no 200 schema"))
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let mut keys: Vec<String> = doc["components"]["schemas"][&reference]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    for path in ["/v1/modules", "/v1/workflows", "/v1/runs"] {
        let (status, answer) = call(&app, Method::GET, path, None, "").await;
        assert_eq!(status, 200);
        let mut keys: Vec<String> = answer.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(schema_keys(path), keys, "GET {path}");
    }
}
