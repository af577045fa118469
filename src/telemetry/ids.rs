//! Trace context: the W3C `traceparent` header, and the ids of a run's
//! spans, derived from the run, step and attempt, so that a span exported
//! again (by another node, after a crash) has the same ids.

use opentelemetry::trace::{SpanId, TraceId};
use sha2::{Digest, Sha256};

/// A parsed `traceparent`: version 00, a trace id, a parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>` (lowercase, non-zero ids), as
    /// W3C Trace Context says; anything else is `None` (the header is then
    /// ignored, as the spec asks).
    pub fn parse(text: &str) -> Option<TraceParent> {
        let text = text.trim();
        let mut parts = text.split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let lower_hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower_hex(trace, 32) || !lower_hex(span, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The header value naming `span_id` in `trace_id` (sampled).
    pub fn header(trace_id: TraceId, span_id: SpanId) -> String {
        format!("00-{trace_id}-{span_id}-01")
    }
}

/// A request's `traceparent` header, when it is a valid one (normalized).
pub fn from_headers(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let parsed = TraceParent::parse(value)?;
    Some(format!(
        "00-{}-{}-{:02x}",
        parsed.trace_id,
        parsed.span_id,
        u8::from(parsed.sampled)
    ))
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"sandstep-trace");
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

fn span(parts: &[&str]) -> SpanId {
    let hash = digest(parts);
    let mut bytes: [u8; 8] = hash[..8].try_into().unwrap();
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    SpanId::from_bytes(bytes)
}

/// The trace of a run that was started without a `traceparent`.
pub fn run_trace(run_id: &str) -> TraceId {
    let hash = digest(&["trace", run_id]);
    let mut bytes: [u8; 16] = hash[..16].try_into().unwrap();
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    TraceId::from_bytes(bytes)
}

/// The trace a run belongs to: its stored `traceparent`'s, else its own.
pub fn trace_of(run_id: &str, traceparent: Option<&str>) -> TraceId {
    traceparent
        .and_then(TraceParent::parse)
        .map_or_else(|| run_trace(run_id), |p| p.trace_id)
}

pub fn run_span(run_id: &str) -> SpanId {
    span(&["run", run_id])
}

pub fn step_span(run_id: &str, step: &str) -> SpanId {
    span(&["step", run_id, step])
}

/// The attempt `attempt` of `step` (of its for_each item `item`).
pub fn attempt_span(run_id: &str, step: &str, item: Option<usize>, attempt: u32) -> SpanId {
    let item = item.map_or_else(String::new, |i| i.to_string());
    span(&["attempt", run_id, step, &item, &attempt.to_string()])
}

/// A wait or sleep step's pause.
pub fn pause_span(run_id: &str, step: &str) -> SpanId {
    span(&["pause", run_id, step])
}

/// The `traceparent` a child run of `step` is started with: the parent
/// run's trace, the step's span.
pub fn child_traceparent(run_id: &str, traceparent: Option<&str>, step: &str) -> String {
    TraceParent::header(trace_of(run_id, traceparent), step_span(run_id, step))
}

/// The `traceparent` an attempt's outgoing HTTP requests carry.
pub fn attempt_traceparent(
    run_id: &str,
    traceparent: Option<&str>,
    step: &str,
    item: Option<usize>,
    attempt: u32,
) -> String {
    TraceParent::header(trace_of(run_id, traceparent), attempt_span(run_id, step, item, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_as_w3c_says() {
        let p = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
        assert!(p.sampled);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn span_ids_depend_on_every_part() {
        assert_eq!(attempt_span("r", "s", None, 1), attempt_span("r", "s", None, 1));
        assert_ne!(attempt_span("r", "s", None, 1), attempt_span("r", "s", None, 2));
        assert_ne!(attempt_span("r", "s", Some(0), 1), attempt_span("r", "s", None, 1));
        assert_ne!(step_span("r", "ab"), step_span("ra", "b"));
        let header = child_traceparent("r", None, "s");
        let parsed = TraceParent::parse(&header).unwrap();
        assert_eq!((parsed.trace_id, parsed.span_id), (run_trace("r"), step_span("r", "s")));
    }
}
