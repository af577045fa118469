//! Running workflow definitions in-process with the real guests.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use sandstep::limits::Caps;
use sandstep::run::{Event, EventKind, Executor, Journal, MemoryJournal, RunSpec, RunState, Secrets};
use sandstep::sandbox::Module;
use sandstep::workflow::{ModuleCatalog, ValidationError, Workflow};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{guests, sandbox};

/// The modules workflows in tests refer to, loaded once.
pub fn modules() -> &'static HashMap<String, Arc<Module>> {
    static MODULES: OnceLock<HashMap<String, Arc<Module>>> = OnceLock::new();
    MODULES.get_or_init(|| {
        let g = guests();
        let files = [
            ("hostile", g.hostile.clone()),
            ("echo", g.example("echo")),
            ("hello", g.example("hello")),
            ("transform", g.example("transform")),
            ("stats", g.example("stats-cmd")),
            ("cmd", g.hostile_cmd_p1.clone()),
        ];
        files
            .into_iter()
            .map(|(name, path)| {
                let bytes = std::fs::read(&path).unwrap();
                (name.to_string(), Arc::new(sandbox().load(&bytes).unwrap()))
            })
            .collect()
    })
}

/// Knows exactly the test modules.
pub struct TestCatalog;

impl ModuleCatalog for TestCatalog {
    fn check(&self, reference: &str) -> Result<(), String> {
        if modules().contains_key(reference) {
            Ok(())
        } else {
            Err(format!("no module {reference}"))
        }
    }
}

pub fn load(yaml: &str) -> Result<Workflow, Vec<ValidationError>> {
    sandstep::workflow::load(yaml, &Caps::default(), Some(&TestCatalog))
}

/// Validation errors as `location: message` lines.
pub fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("the definition was accepted"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

pub fn executor() -> Executor {
    Executor::new(sandbox().clone(), 64, Caps::default())
}

pub fn spec(yaml: &str, secrets: Secrets) -> RunSpec {
    let workflow = load(yaml).unwrap_or_else(|e| panic!("invalid workflow: {e:?}"));
    RunSpec {
        run_id: "run-test".into(),
        workflow: Arc::new(workflow),
        modules: modules().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        secrets: Arc::new(secrets),
    }
}

/// A queued run of `spec` with `input`, its first event already journaled.
pub async fn queued(spec: &RunSpec, input: Value, journal: &dyn Journal) -> RunState {
    let event = Executor::queue(spec, &input).unwrap_or_else(|e| panic!("input refused: {e:?}"));
    journal.append(std::slice::from_ref(&event)).await.unwrap();
    let mut state = RunState::new(&spec.run_id, &spec.workflow);
    state.apply(&event);
    state
}

pub struct Finished {
    pub state: RunState,
    pub events: Vec<Event>,
    pub elapsed: std::time::Duration,
}

impl Finished {
    /// `type step` for step events, `type` for run events, in order.
    pub fn trace(&self) -> Vec<String> {
        self.events.iter().filter_map(|e| describe(&e.kind)).collect()
    }

    pub fn step(&self, id: &str) -> &sandstep::run::StepState {
        &self.state.steps[id]
    }

    pub fn status(&self, id: &str) -> &'static str {
        self.step(id).status.as_str()
    }

    /// Position of the first event matching `type step` in the trace.
    pub fn position(&self, entry: &str) -> usize {
        self.trace()
            .iter()
            .position(|t| t == entry)
            .unwrap_or_else(|| panic!("no {entry} in {:?}", self.trace()))
    }
}

fn describe(kind: &EventKind) -> Option<String> {
    let step = match kind {
        EventKind::StepStarted { step, item, .. } => match item {
            Some(i) => format!("{step}[{i}]"),
            None => step.clone(),
        },
        EventKind::ItemSucceeded { step, item, .. } => format!("{step}[{item}]"),
        EventKind::StepSucceeded { step, .. }
        | EventKind::StepFailed { step, .. }
        | EventKind::StepSkipped { step, .. }
        | EventKind::StepCanceled { step, .. }
        | EventKind::StepRetrying { step, .. }
        | EventKind::StepWaiting { step, .. }
        | EventKind::StepExpanded { step, .. } => step.clone(),
        EventKind::StepLog { .. } => return None,
        other => return Some(other.name().to_string()),
    };
    Some(format!("{} {step}", kind.name()))
}

/// Runs `yaml` with `input` to the end.
pub async fn run(yaml: &str, input: Value) -> Finished {
    run_with(yaml, input, Secrets::default(), CancellationToken::new()).await
}

pub async fn run_with(yaml: &str, input: Value, secrets: Secrets, cancel: CancellationToken) -> Finished {
    let spec = spec(yaml, secrets);
    let journal = MemoryJournal::new();
    let state = queued(&spec, input, &journal).await;
    let started = std::time::Instant::now();
    let state = executor()
        .execute(&spec, state, &journal, cancel)
        .await
        .expect("the journal accepts events");
    let elapsed = started.elapsed();
    let events = journal.events();
    // The state the executor returned is exactly the fold of its events.
    assert_eq!(RunState::from_events(&spec.run_id, &spec.workflow, &events), state);
    Finished { state, events, elapsed }
}
