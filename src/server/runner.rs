//! The server's runs: starting them (module references pinned to digests),
//! driving each on its own task through the durable journal, resuming
//! unfinished runs at start-up, canceling, and draining on shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ApiError;
use super::metrics::Metrics;
use crate::limits::Caps;
use crate::modules::Reference;
use crate::run::journal::AppendFuture;
use crate::run::{Event, Executor, Journal, JournalError, RunSpec, RunState, Secrets};
use crate::sandbox::Module;
use crate::store::runs::{Inserted, RunRow};
use crate::store::writer::EventWriter;
use crate::store::Db;
use crate::workflow::{Action, ModuleCatalog, Workflow};

/// Live listeners per run: event streams (SSE) and one-shot "the run
/// ended" signals (`?wait`, cancel). Only a run's own listeners wake, and
/// waiters wake once, at the end.
#[derive(Default)]
pub struct Watchers {
    inner: Mutex<WatcherMaps>,
}

#[derive(Default)]
struct WatcherMaps {
    streams: HashMap<String, broadcast::Sender<Event>>,
    ends: HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl Watchers {
    /// Events of `run_id` published from now on.
    pub fn subscribe(&self, run_id: &str) -> broadcast::Receiver<Event> {
        let mut maps = self.inner.lock().unwrap();
        maps.streams
            .entry(run_id.to_string())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Resolves when `run_id` records its final event from now on.
    pub fn on_end(&self, run_id: &str) -> tokio::sync::oneshot::Receiver<()> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.inner
            .lock()
            .unwrap()
            .ends
            .entry(run_id.to_string())
            .or_default()
            .push(sender);
        receiver
    }

    fn publish(&self, event: &Event) {
        let mut maps = self.inner.lock().unwrap();
        if let Some(sender) = maps.streams.get(&event.run_id) {
            if sender.send(event.clone()).is_err() || sender.receiver_count() == 0 {
                maps.streams.remove(&event.run_id);
            }
        }
        if event.kind.is_final() {
            for waiter in maps.ends.remove(&event.run_id).unwrap_or_default() {
                let _ = waiter.send(());
            }
        }
    }
}

/// Commits events through the group-commit writer, then tells the run's
/// listeners and the metrics.
pub struct DurableJournal {
    writer: EventWriter,
    watchers: Arc<Watchers>,
    metrics: Arc<Metrics>,
}

impl Journal for DurableJournal {
    fn append<'a>(&'a self, events: &'a [Event]) -> AppendFuture<'a> {
        Box::pin(async move {
            self.writer.write(events.to_vec()).await.map_err(JournalError)?;
            for event in events {
                self.metrics.observe(event);
                self.watchers.publish(event);
            }
            Ok(())
        })
    }
}

pub struct Runner {
    pub db: Db,
    executor: Arc<Executor>,
    journal: Arc<DurableJournal>,
    pub watchers: Arc<Watchers>,
    secrets: Arc<Secrets>,
    /// Compiled modules by digest.
    modules: Mutex<HashMap<String, Arc<Module>>>,
    /// Validated workflow versions.
    workflows: Mutex<HashMap<(String, i64), Arc<Workflow>>>,
    /// Cancel handles of the runs this process is driving.
    live: Mutex<HashMap<String, CancellationToken>>,
    tasks: TaskTracker,
    drain: CancellationToken,
    pub metrics: Arc<Metrics>,
}

/// Module references known to the database, for validating definitions.
pub struct DbCatalog {
    tags: HashSet<(String, String)>,
    digests: HashSet<String>,
}

impl DbCatalog {
    pub async fn load(db: &Db) -> Result<Self, ApiError> {
        let modules = db.list_modules().await?;
        Ok(DbCatalog {
            tags: modules.iter().map(|m| (m.name.clone(), m.tag.clone())).collect(),
            digests: modules.iter().map(|m| m.digest.clone()).collect(),
        })
    }
}

impl ModuleCatalog for DbCatalog {
    fn check(&self, reference: &str) -> Result<(), String> {
        let known = match Reference::parse(reference).map_err(|e| e.to_string())? {
            Reference::Tag { name, tag } => self.tags.contains(&(name, tag)),
            Reference::Digest { digest, .. } => self.digests.contains(&digest),
        };
        if known {
            Ok(())
        } else {
            Err(format!("no module {reference} on this server (push it first)"))
        }
    }
}

impl Runner {
    pub fn new(db: Db, executor: Arc<Executor>, secrets: Arc<Secrets>, metrics: Arc<Metrics>) -> Arc<Runner> {
        let watchers = Arc::new(Watchers::default());
        let journal = Arc::new(DurableJournal {
            writer: EventWriter::start(db.clone()),
            watchers: watchers.clone(),
            metrics: metrics.clone(),
        });
        Arc::new(Runner {
            db,
            executor,
            journal,
            watchers,
            secrets,
            modules: Mutex::new(HashMap::new()),
            workflows: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            drain: CancellationToken::new(),
            metrics,
        })
    }

    pub fn caps(&self) -> &Caps {
        self.executor.caps()
    }

    pub fn live_runs(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// Loads bytes into the sandbox off the async threads (compiling can take
    /// seconds for large components).
    pub async fn compile(&self, bytes: Vec<u8>) -> Result<Arc<Module>, crate::sandbox::ModuleError> {
        let sandbox = self.executor.sandbox().clone();
        let module = tokio::task::spawn_blocking(move || sandbox.load(&bytes))
            .await
            .expect("compile task")?;
        let module = Arc::new(module);
        self.modules
            .lock()
            .unwrap()
            .insert(module.info.digest.clone(), module.clone());
        Ok(module)
    }

    async fn module(&self, digest: &str) -> Result<Arc<Module>, ApiError> {
        if let Some(module) = self.modules.lock().unwrap().get(digest) {
            return Ok(module.clone());
        }
        let bytes = self
            .db
            .module_bytes(digest)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("module {digest}")))?;
        self.compile(bytes)
            .await
            .map_err(|e| ApiError::Internal(format!("stored module {digest} no longer loads: {e}")))
    }

    /// A validated workflow version.
    pub async fn workflow(&self, name: &str, version: Option<i64>) -> Result<(i64, Arc<Workflow>), ApiError> {
        let stored = self
            .db
            .workflow(name, version)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("workflow {name}")))?;
        if let Some(found) = self.workflows.lock().unwrap().get(&(name.to_string(), stored.version)) {
            return Ok((stored.version, found.clone()));
        }
        let workflow = crate::workflow::load(&stored.source, self.caps(), None).map_err(ApiError::InvalidWorkflow)?;
        let workflow = Arc::new(workflow);
        self.workflows
            .lock()
            .unwrap()
            .insert((name.to_string(), stored.version), workflow.clone());
        Ok((stored.version, workflow))
    }

    /// Pins every module reference of `workflow` to a digest.
    async fn pin_modules(&self, workflow: &Workflow) -> Result<HashMap<String, String>, ApiError> {
        let mut pinned = HashMap::new();
        for step in &workflow.steps {
            let Action::Module { reference, .. } = &step.action else {
                continue;
            };
            if pinned.contains_key(reference) {
                continue;
            }
            let field = format!("steps.{}.module", step.id);
            let digest = match Reference::parse(reference)
                .map_err(|e| ApiError::unprocessable("invalid-module", e.to_string(), Some(&field)))?
            {
                Reference::Tag { name, tag } => self.db.module_digest(&name, &tag).await?,
                Reference::Digest { digest, .. } => self.db.module_bytes(&digest).await?.map(|_| digest),
            };
            let digest = digest.ok_or_else(|| {
                ApiError::unprocessable(
                    "module-not-found",
                    format!("no module {reference} on this server"),
                    Some(&field),
                )
            })?;
            pinned.insert(reference.clone(), digest);
        }
        Ok(pinned)
    }

    async fn spec(
        &self,
        run_id: &str,
        workflow: Arc<Workflow>,
        pinned: &HashMap<String, String>,
    ) -> Result<RunSpec, ApiError> {
        let mut modules = HashMap::new();
        for (reference, digest) in pinned {
            modules.insert(reference.clone(), self.module(digest).await?);
        }
        Ok(RunSpec {
            run_id: run_id.into(),
            workflow,
            modules,
            secrets: self.secrets.clone(),
        })
    }

    /// Starts a run of the latest version of `name`. With an idempotency key
    /// already used for this workflow, answers the existing run (`false`).
    pub async fn start(
        self: &Arc<Self>,
        name: &str,
        input: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<(RunRow, bool), ApiError> {
        if self.drain.is_cancelled() {
            return Err(ApiError::Unavailable);
        }
        let (version, workflow) = self.workflow(name, None).await?;
        let pinned = self.pin_modules(&workflow).await?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let spec = self.spec(&run_id, workflow.clone(), &pinned).await?;
        let queued = Executor::queue(&spec, input)
            .map_err(|errors| ApiError::unprocessable("invalid-input", errors.join("; "), Some("input")))?;
        match self
            .db
            .insert_run(&run_id, name, version, idempotency_key, &pinned, &queued)
            .await?
        {
            Inserted::Existing(existing) => return Ok((*existing, false)),
            Inserted::New => {}
        }
        self.metrics.observe(&queued);
        let mut state = RunState::new(&run_id, &workflow);
        state.apply(&queued);
        self.spawn(spec, state);
        let row = self
            .db
            .run(&run_id)
            .await?
            .ok_or_else(|| ApiError::Internal("run vanished".into()))?;
        Ok((row, true))
    }

    fn spawn(self: &Arc<Self>, spec: RunSpec, state: RunState) {
        let cancel = CancellationToken::new();
        self.live.lock().unwrap().insert(spec.run_id.clone(), cancel.clone());
        let runner = self.clone();
        self.tasks.spawn(async move {
            let result = runner
                .executor
                .execute_until(&spec, state, runner.journal.as_ref(), cancel, runner.drain.clone())
                .await;
            if let Err(error) = result {
                // The journal refused events: the run stays as last committed
                // and is resumed at the next start.
                tracing::error!(run = %spec.run_id, %error, "run stopped: its events could not be committed");
            }
            runner.live.lock().unwrap().remove(&spec.run_id);
        });
    }

    /// Resumes every unfinished run from its events (at start-up). A run
    /// that cannot be resumed (its workflow or a pinned module no longer
    /// loads) is failed with the reason, so one bad run never keeps the
    /// server from starting.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, ApiError> {
        let runs = self.db.unfinished_runs().await?;
        let count = runs.len();
        for row in runs {
            let events = self.db.events(&row.id, 0).await?;
            if let Err(error) = self.resume(&row, &events).await {
                let reason = match error {
                    ApiError::NotFound(what) => format!("cannot resume: {what} no longer exists"),
                    ApiError::InvalidWorkflow(errors) => {
                        format!("cannot resume: the workflow version is invalid: {}", errors[0])
                    }
                    other => format!("cannot resume: {other:?}"),
                };
                tracing::error!(run = %row.id, %reason, "failing a run that cannot be resumed");
                let failed = Event {
                    seq: events.last().map_or(1, |e| e.seq + 1),
                    run_id: row.id.clone(),
                    at_ms: crate::run::event::now_ms(),
                    kind: crate::run::EventKind::RunFailed { error: reason },
                };
                self.journal
                    .append(std::slice::from_ref(&failed))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
            }
        }
        Ok(count)
    }

    async fn resume(self: &Arc<Self>, row: &RunRow, events: &[Event]) -> Result<(), ApiError> {
        let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
        let state = RunState::from_events(&row.id, &workflow, events);
        let spec = self.spec(&row.id, workflow, &row.modules).await?;
        tracing::info!(run = %row.id, status = %row.status, events = events.len(), "resuming run");
        self.spawn(spec, state);
        Ok(())
    }

    /// A run's row, or 404.
    pub async fn run_row(&self, run_id: &str) -> Result<RunRow, ApiError> {
        self.db
            .run(run_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("run {run_id}")))
    }

    /// Asks a live run to cancel. `false` when this process is not driving it.
    pub fn cancel(&self, run_id: &str) -> bool {
        match self.live.lock().unwrap().get(run_id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops starting attempts; waits up to `grace` for attempts in flight to
    /// finish and be committed. Unfinished runs resume at the next start.
    pub async fn drain(&self, grace: std::time::Duration) {
        self.drain.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                runs = self.live_runs(),
                "grace period over; unfinished attempts will run again on restart"
            );
        }
    }
}
