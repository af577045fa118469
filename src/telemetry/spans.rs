//! A run's spans, built from its events as they are committed: the
//! `run` span, a `step` span per step under it, an `attempt` span per
//! attempt under its step, and a `wait` or `sleep` span for a step's
//! pause. A span is made when the event that ends it arrives, from the
//! start the state below remembers; a run that pauses drops its state and
//! rebuilds it from its stored events when it resumes (so a run paused for
//! days holds nothing here).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event as SpanEvent, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

pub use super::events::{closes, convert, Ended, TraceEvent, TraceKind};
use super::ids::{self, TraceParent};
use crate::sandbox::{HttpUse, Level};

/// What a run's spans have in common, known when its driver starts.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    /// The stored `traceparent` the run was started with (a request's, a
    /// webhook delivery's, an event's, its parent step's).
    pub traceparent: Option<String>,
    pub workflow: String,
    pub version: i64,
    pub queued_ms: u64,
    /// Each module step's reference and pinned digest.
    pub modules: HashMap<String, (String, String)>,
}

struct StepTrace {
    start_ms: u64,
    items: Option<usize>,
    attempts: HashMap<(Option<usize>, u32), AttemptTrace>,
    /// A wait's or sleep's start and topic (`None`: a sleep).
    pause: Option<(u64, Option<String>)>,
}

struct AttemptTrace {
    start_ms: u64,
    node: Option<String>,
    logs: Vec<SpanEvent>,
}

/// The open spans of one run.
pub struct RunTrace {
    info: RunInfo,
    trace_id: TraceId,
    parent: Option<(SpanId, bool)>,
    steps: HashMap<String, StepTrace>,
    logs: Vec<SpanEvent>,
    /// The kind of the last step failure (the run's `error.type`).
    failed_kind: Option<String>,
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn level(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn log_event(at_ms: u64, lvl: Level, message: &str) -> SpanEvent {
    SpanEvent::new(
        "log",
        time(at_ms),
        vec![
            KeyValue::new("log.severity", level(lvl)),
            KeyValue::new("log.message", message.to_string()),
        ],
        0,
    )
}

/// One outbound request as a span event, in the HTTP semantic conventions.
fn http_event(request: &HttpUse, at: SystemTime) -> SpanEvent {
    let (address, port) = match request.host.rsplit_once(':') {
        Some((address, port)) => (address, port.parse::<i64>().ok()),
        None => (request.host.as_str(), None),
    };
    let mut attributes = vec![
        KeyValue::new("http.request.method", request.method.clone()),
        KeyValue::new("server.address", address.to_string()),
        KeyValue::new("sandstep.http.body_bytes", request.bytes as i64),
    ];
    if let Some(port) = port {
        attributes.push(KeyValue::new("server.port", port));
    }
    if let Some(status) = request.status {
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    if let Some(error) = &request.error {
        attributes.push(KeyValue::new("error.type", "_OTHER"));
        attributes.push(KeyValue::new("sandstep.http.error", error.clone()));
    }
    SpanEvent::new("http.request", at, attributes, 0)
}

impl RunTrace {
    pub fn new(info: RunInfo) -> RunTrace {
        let parsed = info.traceparent.as_deref().and_then(TraceParent::parse);
        let trace_id = parsed.map_or_else(|| ids::run_trace(&info.run_id), |p| p.trace_id);
        // A child run's parent is its parent run's step, in this process's
        // trace; a request's, a delivery's or an event's span is remote.
        let parent = parsed.map(|p| (p.span_id, true));
        RunTrace {
            info,
            trace_id,
            parent,
            steps: HashMap::new(),
            logs: Vec::new(),
            failed_kind: None,
        }
    }

    fn step(&mut self, step: &str, at_ms: u64) -> &mut StepTrace {
        self.steps.entry(step.to_string()).or_insert_with(|| StepTrace {
            start_ms: at_ms,
            items: None,
            attempts: HashMap::new(),
            pause: None,
        })
    }

    /// Applies one event; the spans it ends go to `out`.
    pub fn apply(&mut self, event: TraceEvent, out: &mut Vec<SpanData>) {
        let at = event.at_ms;
        match event.kind {
            TraceKind::StepBegan { step, items } => {
                let state = self.step(&step, at);
                if items.is_some() {
                    state.items = items;
                }
            }
            TraceKind::AttemptStarted {
                step,
                item,
                attempt,
                node,
            } => {
                let state = self.step(&step, at);
                state.attempts.insert(
                    (item, attempt),
                    AttemptTrace {
                        start_ms: at,
                        node,
                        logs: Vec::new(),
                    },
                );
            }
            TraceKind::Cached { step, item, from } => {
                self.step(&step, at);
                let mut attributes = self.attempt_attributes(&step, item, 1, None);
                attributes.push(KeyValue::new("sandstep.attempt.cached", true));
                attributes.push(KeyValue::new("sandstep.attempt.cached_from", from));
                attributes.push(KeyValue::new("sandstep.attempt.status", "succeeded"));
                let id = ids::attempt_span(&self.info.run_id, &step, item, 1);
                let parent = ids::step_span(&self.info.run_id, &step);
                out.push(self.span(
                    "attempt",
                    id,
                    Some((parent, false)),
                    at,
                    at,
                    attributes,
                    Vec::new(),
                    Vec::new(),
                    Status::Ok,
                ));
            }
            TraceKind::Log {
                step,
                item,
                attempt,
                level,
                message,
            } => {
                if let Some(open) = self
                    .steps
                    .get_mut(&step)
                    .and_then(|s| s.attempts.get_mut(&(item, attempt)))
                {
                    open.logs.push(log_event(at, level, &message));
                }
            }
            TraceKind::Waiting { step, topic } => {
                self.step(&step, at).pause = Some((at, topic));
            }
            TraceKind::AttemptEnded { step, item, record } => self.end_attempt(&step, item, record, at, out),
            TraceKind::StepEnded {
                step,
                status,
                error,
                resumed_by,
            } => self.end_step(&step, status, error, resumed_by, at, out),
            TraceKind::Paused => {}
            TraceKind::Called { step, module, digest } => {
                self.info.modules.insert(step, (module, digest));
            }
            TraceKind::WorkflowLog { level, message } => self.logs.push(log_event(at, level, &message)),
            TraceKind::RunEnded { status, error } => self.end_run(status, error, at, out),
        }
    }

    fn attempt_attributes(&self, step: &str, item: Option<usize>, attempt: u32, node: Option<String>) -> Vec<KeyValue> {
        let mut attributes = vec![
            KeyValue::new("sandstep.run.id", self.info.run_id.clone()),
            KeyValue::new("sandstep.step.id", step.to_string()),
            KeyValue::new("sandstep.attempt.number", i64::from(attempt)),
        ];
        if let Some(item) = item {
            attributes.push(KeyValue::new("sandstep.item.index", item as i64));
        }
        if let Some((name, digest)) = self.info.modules.get(step) {
            attributes.push(KeyValue::new("sandstep.module.name", name.clone()));
            if !digest.is_empty() {
                attributes.push(KeyValue::new("sandstep.module.digest", digest.clone()));
            }
        }
        if let Some(node) = node {
            attributes.push(KeyValue::new("sandstep.node", node));
        }
        attributes
    }

    fn end_attempt(&mut self, step: &str, item: Option<usize>, record: Ended, at: u64, out: &mut Vec<SpanData>) {
        let open = self
            .steps
            .get_mut(step)
            .and_then(|s| s.attempts.remove(&(item, record.attempt)));
        let (start_ms, node, logs) = match open {
            Some(open) => (open.start_ms, open.node, open.logs),
            // Started before what this node read (it should not happen):
            // the record's duration says when.
            None => (at.saturating_sub(record.duration_us / 1000), None, Vec::new()),
        };
        let mut attributes = self.attempt_attributes(step, item, record.attempt, node);
        attributes.push(KeyValue::new("sandstep.attempt.cached", false));
        attributes.push(KeyValue::new(
            "sandstep.attempt.fuel_consumed",
            record.fuel_consumed as i64,
        ));
        attributes.push(KeyValue::new("sandstep.attempt.peak_memory", record.peak_memory as i64));
        attributes.push(KeyValue::new("sandstep.attempt.duration_us", record.duration_us as i64));
        let status = match &record.error {
            None => {
                attributes.push(KeyValue::new("sandstep.attempt.status", "succeeded"));
                Status::Ok
            }
            Some((kind, message)) => {
                attributes.push(KeyValue::new("sandstep.attempt.status", "failed"));
                attributes.push(KeyValue::new("error.type", kind.clone()));
                Status::error(message.clone())
            }
        };
        let start = time(start_ms);
        let end = start + Duration::from_micros(record.duration_us);
        let mut logs = logs;
        logs.extend(record.http.iter().map(|request| http_event(request, end)));
        let id = ids::attempt_span(&self.info.run_id, step, item, record.attempt);
        let parent = ids::step_span(&self.info.run_id, step);
        let mut span = self.span(
            "attempt",
            id,
            Some((parent, false)),
            start_ms,
            at,
            attributes,
            logs,
            Vec::new(),
            status,
        );
        span.end_time = end.max(span.start_time);
        out.push(span);
    }

    fn end_step(
        &mut self,
        step: &str,
        status: &'static str,
        error: Option<(String, String)>,
        resumed_by: Option<String>,
        at: u64,
        out: &mut Vec<SpanData>,
    ) {
        let Some(state) = self.steps.remove(step) else {
            return; // skipped before it began: no span
        };
        let run = &self.info.run_id;
        let step_id = ids::step_span(run, step);
        if let Some((start, topic)) = state.pause {
            let name = if topic.is_some() { "wait" } else { "sleep" };
            let mut attributes = vec![
                KeyValue::new("sandstep.run.id", run.clone()),
                KeyValue::new("sandstep.step.id", step.to_string()),
            ];
            if let Some(topic) = topic {
                attributes.push(KeyValue::new("sandstep.wait.topic", topic));
            }
            let links = resumed_by
                .as_deref()
                .and_then(TraceParent::parse)
                .map(|p| {
                    let context =
                        SpanContext::new(p.trace_id, p.span_id, TraceFlags::SAMPLED, true, TraceState::default());
                    Link::new(context, vec![KeyValue::new("sandstep.link", "resumed_by")], 0)
                })
                .into_iter()
                .collect();
            let pause = ids::pause_span(run, step);
            out.push(self.span(
                name,
                pause,
                Some((step_id, false)),
                start,
                at,
                attributes,
                Vec::new(),
                links,
                Status::Unset,
            ));
        }
        // Attempts still open when their step ends (a canceled step).
        let open: Vec<_> = state.attempts.into_iter().collect();
        for ((item, attempt), trace) in open {
            let mut attributes = self.attempt_attributes(step, item, attempt, trace.node);
            attributes.push(KeyValue::new("sandstep.attempt.status", status));
            let id = ids::attempt_span(run, step, item, attempt);
            out.push(self.span(
                "attempt",
                id,
                Some((step_id, false)),
                trace.start_ms,
                at,
                attributes,
                trace.logs,
                Vec::new(),
                Status::Unset,
            ));
        }
        let mut attributes = vec![
            KeyValue::new("sandstep.run.id", run.clone()),
            KeyValue::new("sandstep.step.id", step.to_string()),
            KeyValue::new("sandstep.step.status", status),
        ];
        if let Some(items) = state.items {
            attributes.push(KeyValue::new("sandstep.step.items", items as i64));
        }
        let span_status = match error {
            Some((kind, message)) if status == "failed" => {
                attributes.push(KeyValue::new("error.type", kind.clone()));
                self.failed_kind = Some(kind);
                Status::error(message)
            }
            _ if status == "succeeded" => Status::Ok,
            _ => Status::Unset,
        };
        let parent = Some((ids::run_span(run), false));
        out.push(self.span(
            "step",
            step_id,
            parent,
            state.start_ms,
            at,
            attributes,
            Vec::new(),
            Vec::new(),
            span_status,
        ));
    }

    fn end_run(&mut self, status: &'static str, error: Option<String>, at: u64, out: &mut Vec<SpanData>) {
        let run = self.info.run_id.clone();
        let mut attributes = vec![
            KeyValue::new("sandstep.run.id", run.clone()),
            KeyValue::new("sandstep.workflow.name", self.info.workflow.clone()),
            KeyValue::new("sandstep.workflow.version", self.info.version),
            KeyValue::new("sandstep.run.status", status),
        ];
        let span_status = match (status, error) {
            ("completed", _) => Status::Ok,
            ("failed", error) => {
                let kind = self.failed_kind.clone().unwrap_or_else(|| "_OTHER".to_string());
                attributes.push(KeyValue::new("error.type", kind));
                Status::error(error.unwrap_or_default())
            }
            _ => Status::Unset,
        };
        let logs = std::mem::take(&mut self.logs);
        let parent = self.parent;
        out.push(self.span(
            "run",
            ids::run_span(&run),
            parent,
            self.info.queued_ms,
            at,
            attributes,
            logs,
            Vec::new(),
            span_status,
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        name: &'static str,
        id: SpanId,
        parent: Option<(SpanId, bool)>,
        start_ms: u64,
        end_ms: u64,
        attributes: Vec<KeyValue>,
        events: Vec<SpanEvent>,
        links: Vec<Link>,
        status: Status,
    ) -> SpanData {
        let context = SpanContext::new(self.trace_id, id, TraceFlags::SAMPLED, false, TraceState::default());
        let (parent_span_id, parent_span_is_remote) = parent.unwrap_or((SpanId::INVALID, false));
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        let mut span_links = SpanLinks::default();
        span_links.links = links;
        SpanData {
            span_context: context,
            parent_span_id,
            parent_span_is_remote,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: time(start_ms),
            end_time: time(end_ms.max(start_ms)),
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: span_links,
            status,
            instrumentation_scope: scope(),
        }
    }
}

fn scope() -> InstrumentationScope {
    static SCOPE: std::sync::OnceLock<InstrumentationScope> = std::sync::OnceLock::new();
    SCOPE
        .get_or_init(|| {
            InstrumentationScope::builder("sandstep")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build()
        })
        .clone()
}
