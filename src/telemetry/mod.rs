//! OpenTelemetry traces of runs (`serve --otlp-endpoint`): span ids derived
//! from the run, step and attempt (`ids`), what spans need of each
//! committed event (`events`), spans built from them (`spans`), and
//! OTLP/HTTP export in batches (`export`).
//! A server without an endpoint has no [`Tracer`], and nothing here runs.

pub mod events;
pub mod export;
pub mod ids;
pub mod spans;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::{mpsc, oneshot};

pub use ids::TraceParent;
use spans::{RunInfo, RunTrace, TraceEvent};

use crate::run::{Event, RunSpec, RunState};
use crate::workflow::validate::Action;

/// Spans per export at most, and how long a span waits for one.
const BATCH: usize = 512;
const EVERY: Duration = Duration::from_secs(1);
/// Messages queued for the tracer at most; beyond it, spans are dropped
/// (and counted) rather than slowing runs down.
const QUEUE: usize = 65_536;

enum Message {
    Open { info: RunInfo, history: Vec<TraceEvent> },
    Events(String, Vec<TraceEvent>),
    Close(String),
    Flush(oneshot::Sender<()>),
}

/// The handle every run's journal and driver share: cheap to clone, never
/// blocks (a full queue drops).
#[derive(Clone)]
pub struct Tracer {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

/// What a run's spans share, from its driver's spec and state.
pub fn run_info(spec: &RunSpec, state: &RunState) -> RunInfo {
    let modules = spec
        .workflow
        .steps
        .iter()
        .filter_map(|step| match &step.action {
            Action::Module { reference, .. } => {
                let digest = spec
                    .modules
                    .get(reference)
                    .map(|m| m.info.digest.clone())
                    .unwrap_or_default();
                Some((step.id.clone(), (reference.clone(), digest)))
            }
            _ => None,
        })
        .collect();
    RunInfo {
        run_id: spec.run_id.clone(),
        traceparent: state.origin.traceparent.clone(),
        workflow: spec.workflow.name.clone(),
        version: spec.workflow.version,
        queued_ms: state.queued_ms,
        modules,
    }
}

impl Tracer {
    /// Starts exporting with `exporter`, on the current runtime.
    pub fn start<E: SpanExporter + 'static>(exporter: E) -> Tracer {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(exporter, receiver));
        Tracer {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    fn send(&self, message: Message) {
        if self.sender.try_send(message).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("the trace exporter is behind: spans are being dropped");
        }
    }

    /// A run's driver starts: `history` is what the run has stored so far
    /// (empty for a new run).
    pub fn open(&self, info: RunInfo, history: &[Event]) {
        let mut converted = Vec::new();
        for event in history {
            spans::convert(event, &mut converted);
        }
        self.send(Message::Open {
            info,
            history: converted,
        });
    }

    /// Events of `run_id` were committed.
    pub fn events(&self, run_id: &str, events: &[Event]) {
        let mut converted = Vec::new();
        for event in events {
            spans::convert(event, &mut converted);
        }
        if !converted.is_empty() {
            self.send(Message::Events(run_id.to_string(), converted));
        }
    }

    /// A run's driver stopped (ended, paused, gave the run up, drained).
    pub fn close(&self, run_id: &str) {
        self.send(Message::Close(run_id.to_string()));
    }

    /// Exports every span made so far (at shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(15), wait).await;
        }
    }
}

async fn run<E: SpanExporter>(exporter: E, mut receiver: mpsc::Receiver<Message>) {
    let mut runs: HashMap<String, RunTrace> = HashMap::new();
    // Runs that paused here after exporting what they ended: resumed here,
    // their history's spans are not exported again. Any other run opened
    // with a history (after a crash or a restart, or taken over from
    // another node) exports its history's spans again, with the same ids,
    // since the node that ended them may have died before it exported them.
    let mut paused_here: HashSet<String> = HashSet::new();
    let mut batch: Vec<SpanData> = Vec::new();
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        let message = tokio::select! {
            message = receiver.recv() => message,
            _ = ticks.tick() => {
                export(&exporter, &mut batch).await;
                continue;
            }
        };
        match message {
            None => break,
            Some(Message::Open { info, history }) => {
                let run_id = info.run_id.clone();
                let again = !paused_here.remove(&run_id) && !history.is_empty();
                let mut trace = RunTrace::new(info);
                let mut ended = Vec::new();
                for event in history {
                    trace.apply(event, &mut ended);
                }
                if again {
                    batch.append(&mut ended);
                }
                runs.insert(run_id, trace);
            }
            Some(Message::Events(run_id, events)) => {
                let Some(trace) = runs.get_mut(&run_id) else { continue };
                let mut closed = None;
                for event in events {
                    if spans::closes(&event.kind) {
                        closed = Some(matches!(event.kind, spans::TraceKind::Paused));
                    }
                    trace.apply(event, &mut batch);
                }
                if let Some(paused) = closed {
                    runs.remove(&run_id);
                    if paused {
                        paused_here.insert(run_id);
                    }
                }
            }
            Some(Message::Close(run_id)) => {
                runs.remove(&run_id);
            }
            Some(Message::Flush(done)) => {
                export(&exporter, &mut batch).await;
                let _ = done.send(());
            }
        }
        if batch.len() >= BATCH {
            export(&exporter, &mut batch).await;
        }
    }
    export(&exporter, &mut batch).await;
}

async fn export<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let count = spans.len();
    if let Err(error) = exporter.export(spans).await {
        tracing::warn!(%error, spans = count, "cannot export spans");
    }
}
