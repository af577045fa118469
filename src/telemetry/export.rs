//! OTLP over HTTP/protobuf (`opentelemetry-otlp`), sent with this crate's
//! reqwest client on the server's runtime.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SpanExporter as _;
use opentelemetry_sdk::Resource;

/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Client(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .timeout(EXPORT_TIMEOUT)
            .send()
            .await?;
        let mut answer = Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        Ok(answer.body(response.bytes().await?)?)
    }
}

/// Where traces go: `serve --otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`),
/// the base URL of an OTLP/HTTP receiver (`/v1/traces` is added unless it
/// is there); headers from `OTEL_EXPORTER_OTLP_HEADERS`; the service name
/// from `OTEL_SERVICE_NAME` (default `sandstep`).
pub fn exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let endpoint = endpoint.trim_end_matches('/');
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/traces")
    };
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| format!("--otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) {endpoint:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "--otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) {endpoint:?} must be an http:// or https:// URL"
        ));
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("cannot build the OTLP client: {e}"))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client(client))
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(HashMap::new())
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "sandstep".to_string());
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    exporter.set_resource(&resource);
    Ok(exporter)
}
