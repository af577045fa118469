//! An OTLP/HTTP receiver for the trace tests: it decodes each
//! `ExportTraceServiceRequest` with the OTLP protobuf types and keeps every
//! span; and the checks the tests make of what it received.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// An OTLP/HTTP receiver: every span of every export, and the service
/// name its resource carried.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub spans: Arc<Mutex<Vec<Span>>>,
    pub services: Arc<Mutex<HashSet<String>>>,
    /// Every `x-collector-key` header an export carried.
    pub keys: Arc<Mutex<Vec<String>>>,
}

pub async fn receiver() -> Receiver {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let services = Arc::new(Mutex::new(HashSet::new()));
    let keys = Arc::new(Mutex::new(Vec::new()));
    let (kept, named, keyed) = (spans.clone(), services.clone(), keys.clone());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (kept, named, keyed) = (kept.clone(), named.clone(), keyed.clone());
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                if let Some(key) = headers.get("x-collector-key") {
                    keyed.lock().unwrap().push(key.to_str().unwrap().to_string());
                }
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                for resource in request.resource_spans {
                    for attribute in resource.resource.map(|r| r.attributes).unwrap_or_default() {
                        if attribute.key == "service.name" {
                            named
                                .lock()
                                .unwrap()
                                .insert(string(attribute.value.and_then(|v| v.value)));
                        }
                    }
                    for scope in resource.scope_spans {
                        kept.lock().unwrap().extend(scope.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        spans,
        services,
        keys,
    }
}

impl Receiver {
    /// Waits (up to 30 s) until the spans received so far hold `wanted`.
    pub async fn until(&self, what: &str, wanted: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if wanted(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "no {what} among {} spans", spans.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn string(value: Option<Any>) -> String {
    match value {
        Some(Any::StringValue(s)) => s,
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| string(a.value.clone().and_then(|v| v.value)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Spans named `name` whose `key` attribute is `value`.
pub fn find<'a>(spans: &'a [Span], name: &str, key: &str, value: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.name == name && attr(s, key).as_deref() == Some(value))
        .collect()
}

/// The one span (deduplicated by id) named `name` with `key` = `value`.
pub fn one<'a>(spans: &'a [Span], name: &str, key: &str, value: &str) -> &'a Span {
    let found = find(spans, name, key, value);
    let ids: HashSet<_> = found.iter().map(|s| s.span_id.clone()).collect();
    assert_eq!(ids.len(), 1, "one {name} span with {key}={value}, not {}", ids.len());
    found[0]
}

/// Every span id given twice is the same span, and every parent is in
/// `spans` (or is `remote`, the caller's own span).
pub fn whole(spans: &[Span], remote: &[Vec<u8>]) {
    let mut by_id: HashMap<&[u8], &Span> = HashMap::new();
    for span in spans {
        if let Some(seen) = by_id.insert(&span.span_id, span) {
            assert_eq!(
                (&seen.trace_id, &seen.parent_span_id, &seen.name, &seen.attributes),
                (&span.trace_id, &span.parent_span_id, &span.name, &span.attributes),
                "a span exported twice is the same span"
            );
        }
    }
    for span in spans {
        let parent = &span.parent_span_id;
        assert!(
            parent.is_empty() || by_id.contains_key(parent.as_slice()) || remote.contains(parent),
            "{} span {} ({:?}) is an orphan",
            span.name,
            hex(&span.span_id),
            attr(span, "sandstep.step.id")
        );
    }
}
