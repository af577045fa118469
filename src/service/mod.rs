//! The run service: how runs start, change and end, for every transport.
//! The HTTP handlers (`server::api`) and the local commands call these
//! functions and translate one error type, [`RunError`].
//!
//! - [`start`]: turning a workflow version and an input into a run ready to
//!   execute (shared with `sandstep run`).
//! - [`definitions`]: modules and workflow versions.
//! - [`modules`]: the one module resolver and validation catalog.
//! - [`journal`]: each run's durable journal: conditional appends under
//!   this node's lease, through the group-commit writer.
//! - [`owner`]: this node's id and the heartbeat that renews its leases.
//! - [`watch`]: live listeners per run, gone when the run ends.
//! - [`waits`]: paused runs started again by their inbox or their timers,
//!   and posted events.
//! - [`rerun`]: a new run of an ended one from a chosen step.
//! - [`secrets`]: secrets set through the API, sealed at rest.
//! - [`cache`]: the step result cache on the store, and clearing it.
//! - [`triggers`]: schedules and posted events that start runs.
//! - [`hooks`]: webhooks, signed by their senders, that start runs or post
//!   events.
//! - [`view`]: the run resource folded from events; [`metrics`].
//!
//! A run's path: [`Service::start`] validates and pins it, the store's
//! writer commits it with its `run.queued` event (group commit), and the
//! service spawns the executor on it with a [`journal::RunJournal`] and an
//! inbox channel. A cancel is an inbox row first ([`Service::deliver`]),
//! then a wake-up of the run's driver, which consumes the row in the same
//! commit as the events it causes. A posted event is an inbox message of
//! every run waiting for its topic. A paused run's driver returns; the
//! service starts it again when a message or its first timer is due.

pub mod bundle;
pub mod cache;
mod children;
pub mod definitions;
pub mod error;
pub mod hooks;
pub mod journal;
pub mod metrics;
pub mod modules;
pub mod nodes;
pub mod owner;
pub mod receipt;
pub mod rerun;
pub mod secrets;
mod signals;
pub mod start;
pub mod summary;
pub mod throttle;
pub mod triggers;
pub mod upgrade;
pub mod usage;
pub mod view;
pub mod waits;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

pub use error::RunError;
use journal::{Outlets, RunJournal};
use metrics::Metrics;
use modules::{Modules, Place};
pub use start::RunRequest;
use summary::{RunSummary, StepCounts};
pub use usage::Caller;
use view::{run_view, RunView};
use watch::{Watch, Watchers};

use crate::run::executor::Controls;
use crate::run::inbox::{Message, MessageKind};
use crate::run::{Event, Executor, RunSpec, RunState, Secrets};
use crate::sandbox::Module;
use crate::store::inbox::Delivery;
use crate::store::runs::{Lease, RunFilter, RunRow};
use crate::store::writer::Writer;
use crate::store::Db;
use crate::workflow::Workflow;

/// How this node holds runs and takes requests.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// This node's id: runs it owns carry it.
    pub node: String,
    /// How long a lease lasts without a heartbeat. Default 10 s.
    pub lease: Duration,
    /// Runs one batch start may hold. Default 1,000.
    pub max_batch: usize,
    /// How long posted events are kept, and how far back a wait that starts
    /// looks for one. Default 7 days.
    pub event_retention: Duration,
    /// Seals the secrets set through the API; without it none can be set.
    pub secrets_key: Option<secrets::SecretsKey>,
    /// Runs this node executes at once at most (`--max-runs`): beyond it,
    /// new runs are left for any node to claim. Default 10,000.
    pub max_runs: usize,
    /// Signs this node's run receipts.
    pub signing: Arc<crate::signing::SigningKey>,
    /// Exports runs' spans (`serve --otlp-endpoint`); none: no traces.
    pub tracer: Option<crate::telemetry::Tracer>,
}

/// A run as a start answers it.
#[derive(Debug, Clone)]
pub struct Started {
    pub run: RunRow,
    /// `false` when an existing run with the same idempotency key answered.
    pub created: bool,
}

/// A run this process is driving.
struct LiveRun {
    inbox: mpsc::UnboundedSender<Message>,
    /// The inbox messages handed to the driver and not yet consumed (on
    /// PostgreSQL, ids need not commit in order: a set, not a cursor).
    forwarded: HashSet<i64>,
}

pub struct Service {
    db: Db,
    outlets: Arc<Outlets>,
    modules: Arc<Modules>,
    executor: Arc<Executor>,
    vault: secrets::Vault,
    config: ServiceConfig,
    /// Validated workflow versions.
    workflows: Mutex<HashMap<(String, i64), Arc<Workflow>>>,
    live: Mutex<HashMap<String, LiveRun>>,
    /// Runs being started from the store, each with whether it was asked
    /// again meanwhile.
    reviving: Mutex<HashMap<String, bool>>,
    /// Tells the alarm a run paused (its timer may be the next one).
    alarm: Arc<tokio::sync::Notify>,
    /// Tells the trigger loop an event was posted or triggers changed.
    triggered: Arc<tokio::sync::Notify>,
    /// Tells the claimer runs may be free to claim.
    claimable: Arc<tokio::sync::Notify>,
    /// Watched runs whose events are read from the store (another node
    /// executes them), each with what wakes its reader.
    followed: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    tasks: TaskTracker,
    drain: CancellationToken,
    /// Counts the workflow versions stored (here, or on another node): what
    /// MCP clients follow for `notifications/tools/list_changed`.
    workflow_changes: tokio::sync::watch::Sender<u64>,
}

impl Service {
    /// The service of this node on `db`, committing through `writer`
    /// (`Writer::start` on the same `db` and node), with its heartbeat.
    pub fn new(
        db: Db,
        writer: Writer,
        executor: Arc<Executor>,
        secrets: Arc<Secrets>,
        config: ServiceConfig,
    ) -> Arc<Service> {
        let outlets = Arc::new(Outlets {
            writer,
            watchers: Arc::new(Watchers::default()),
            metrics: Arc::new(Metrics::default()),
            tracer: config.tracer.clone(),
        });
        let modules = Arc::new(Modules::new(
            executor.sandbox().clone(),
            Some(db.clone()),
            HashMap::new(),
            Place::Server,
        ));
        executor.set_modules(modules.clone());
        let service = Arc::new(Service {
            db,
            outlets,
            modules,
            executor,
            vault: secrets::Vault::new(&secrets, config.secrets_key.clone()),
            config,
            workflows: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            reviving: Mutex::new(HashMap::new()),
            alarm: Arc::new(tokio::sync::Notify::new()),
            triggered: Arc::new(tokio::sync::Notify::new()),
            claimable: Arc::new(tokio::sync::Notify::new()),
            followed: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            drain: CancellationToken::new(),
            workflow_changes: tokio::sync::watch::Sender::new(0),
        });
        owner::heartbeat(&service);
        owner::claimer(&service);
        signals::listen(&service);
        waits::alarm(&service);
        triggers::run(&service);
        service
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn caps(&self) -> &crate::limits::Caps {
        self.executor.caps()
    }

    /// Runs this process is driving.
    pub fn live_runs(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// Runs with a live listener.
    pub fn watched_runs(&self) -> usize {
        self.outlets.watchers.len()
    }

    /// Counts a store failure and passes it on.
    fn store<T>(&self, result: Result<T, crate::store::StoreError>) -> Result<T, RunError> {
        result.map_err(|error| {
            self.outlets.metrics.store_error();
            RunError::Store(error)
        })
    }

    // ----- runs -----

    /// Drives a run on its own task until it ends, pauses, this process
    /// drains, or another owner takes it.
    pub(super) fn spawn(
        self: &Arc<Self>,
        spec: RunSpec,
        state: RunState,
        lease: Lease,
        head: Option<&str>,
        pending: Vec<Message>,
        history: &[Event],
    ) {
        self.outlets.trace_open(&spec, &state, history);
        let (inbox, receiver) = mpsc::unbounded_channel();
        let forwarded = pending.iter().map(|m| m.id).collect();
        for message in pending {
            let _ = inbox.send(message);
        }
        let own = inbox.clone();
        self.live
            .lock()
            .unwrap()
            .insert(spec.run_id.clone(), LiveRun { inbox, forwarded });
        let service = self.clone();
        let head = head.map(str::to_string);
        let span = tracing::info_span!("run", run = %spec.run_id, workflow = %spec.workflow.name);
        self.tasks.spawn(
            async move {
                let throttled = spec.workflow.throttles() || spec.workflow.code.is_some();
                let journal = RunJournal::new(
                    service.outlets.clone(),
                    spec.run_id.clone(),
                    lease,
                    throttled,
                    head.as_deref(),
                );
                let controls = Controls {
                    inbox: Some(receiver),
                    drain: service.drain.clone(),
                    park: true,
                    children: Some(service.children()),
                    ..Controls::default()
                };
                let result = service.executor.execute_until(&spec, state, &journal, controls).await;
                service.outlets.trace_close(&spec.run_id);
                let (parked, parent) = match &result {
                    Ok(state) if state.status.is_terminal() => (false, state.origin.parent_run_id.clone()),
                    Ok(_) => (true, None),
                    Err(_) => (false, None),
                };
                // Moved to another version: it goes on under that one.
                let moved = parked
                    && matches!(&result, Ok(state) if state.upgraded.is_some_and(|(_, to)| to != spec.workflow.version));
                let mut again = false;
                match result {
                    Ok(_) => {}
                    Err(crate::run::JournalError::Conflict(reason)) => {
                        tracing::warn!(%reason, "gave the run up: another owner holds it");
                    }
                    Err(error) => {
                        // The run stays as last committed; it starts again
                        // from there in a second (the store may be back).
                        tracing::error!(%error, "run stopped: its events could not be committed; starting it again in 1 s");
                        again = true;
                    }
                }
                let live = {
                    let mut live = service.live.lock().unwrap();
                    // A driver started since under a newer claim keeps its entry.
                    if live.get(&spec.run_id).is_some_and(|l| l.inbox.same_channel(&own)) {
                        live.remove(&spec.run_id);
                    }
                    live.len()
                };
                // A node at capacity has room again: runs may wait for it.
                if live + 1 >= service.config.max_runs {
                    service.claimable.notify_one();
                }
                if moved && !service.drain.is_cancelled() {
                    service.revive(&spec.run_id).await;
                } else if parked && !service.drain.is_cancelled() {
                    service.parked(&spec.run_id).await;
                }
                if again {
                    let (service, run_id) = (service.clone(), spec.run_id.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        service.revive(&run_id).await;
                    });
                }
                // A child's end is in its parent's inbox: wake the parent.
                if let Some(parent) = parent {
                    service.wake(&parent).await;
                }
            }
            .instrument(span),
        );
    }

    /// A run's row.
    pub async fn run_row(&self, run_id: &str) -> Result<RunRow, RunError> {
        self.store(self.db.run(run_id).await)?
            .ok_or_else(|| RunError::NotFound(format!("run {run_id}")))
    }

    /// The run resource: its row and every step with its attempts.
    pub async fn get(&self, run_id: &str) -> Result<RunView, RunError> {
        let row = self.run_row(run_id).await?;
        let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
        let events = self.events(run_id, 0).await?;
        Ok(run_view(row, &workflow, &events))
    }

    /// Runs newest first, one page (`limit` + 1 rows tell whether more
    /// follow), each with its step counts.
    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, RunError> {
        let rows = self.store(self.db.list_runs(filter).await)?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut ends = self.store(self.db.step_ends(&ids).await)?;
        let mut summaries = Vec::with_capacity(rows.len());
        for row in rows {
            let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
            let steps = StepCounts::new(workflow.steps.len(), ends.remove(&row.id).unwrap_or_default());
            summaries.push(RunSummary { row, steps });
        }
        Ok(summaries)
    }

    /// Events of a run after `after`; a row that cannot be decoded is an
    /// error logged with the run id and counted.
    pub async fn events(&self, run_id: &str, after: u64) -> Result<Vec<Event>, RunError> {
        self.db.events(run_id, after).await.map_err(|error| {
            self.outlets.metrics.store_error();
            tracing::error!(run = %run_id, %error, "cannot read the run's events");
            RunError::Store(error)
        })
    }

    /// Stores a request to a run in its inbox (durable before this returns)
    /// and wakes the run's driver. 404 for no run, 409 for one that ended.
    pub async fn deliver(self: &Arc<Self>, run_id: &str, message: MessageKind) -> Result<i64, RunError> {
        match self.store(self.db.deliver(run_id, &message).await)? {
            Delivery::NoRun => Err(RunError::NotFound(format!("run {run_id}"))),
            Delivery::Ended(status) => Err(RunError::Conflict(format!("run {run_id} already ended ({status})"))),
            Delivery::Stored(id) => {
                self.wake(run_id).await;
                Ok(id)
            }
        }
    }

    /// Hands a live run's driver the inbox messages it has not seen; starts
    /// a paused run again.
    async fn wake(self: &Arc<Self>, run_id: &str) {
        if !self.live.lock().unwrap().contains_key(run_id) {
            return self.revive(run_id).await;
        }
        let pending = match self.db.pending_messages(run_id).await {
            Ok(pending) => pending,
            Err(error) => {
                self.outlets.metrics.store_error();
                tracing::error!(run = %run_id, %error, "cannot read the run's inbox; it is read again at the next start");
                return;
            }
        };
        let mut live = self.live.lock().unwrap();
        if let Some(live) = live.get_mut(run_id) {
            // Messages consumed since were answered: forget them.
            live.forwarded.retain(|id| pending.iter().any(|m| m.id == *id));
            for message in pending {
                if live.forwarded.insert(message.id) {
                    let _ = live.inbox.send(message);
                }
            }
        }
    }

    /// Asks a run to cancel (through its inbox); answers once the request
    /// is stored and, within `wait`, the run has ended.
    pub async fn cancel(self: &Arc<Self>, run_id: &str, wait: Duration) -> Result<(), RunError> {
        let mut watch = self.outlets.watchers.watch(run_id);
        self.deliver(
            run_id,
            MessageKind::Cancel {
                reason: "canceled by request".into(),
            },
        )
        .await?;
        // Executed by another node: its end is read from the store.
        self.follow(run_id, 0, false);
        let _ = tokio::time::timeout(wait, watch.ended()).await;
        Ok(())
    }

    /// A watch on a run's events from now on, and the run's row as stored
    /// after the watch began (404 for an unknown run).
    pub async fn watch(self: &Arc<Self>, run_id: &str) -> Result<(Watch, RunRow), RunError> {
        let watch = self.outlets.watchers.watch(run_id);
        // What is stored now the caller reads itself (or, for a run that
        // ended by now, needs not): the run is followed from there, not
        // from its first event. Read before the row, so a run that ends in
        // between has its final event after it.
        let stored = self.store(self.db.last_seq(run_id).await)?;
        let (row, lease) = self
            .store(self.db.run_with_lease(run_id).await)?
            .ok_or_else(|| RunError::NotFound(format!("run {run_id}")))?;
        if !row.is_ended() {
            let held = lease.is_some_and(|lease| lease.node == self.config.node);
            self.follow(run_id, stored, held);
        }
        Ok((watch, row))
    }

    /// Returns when the run has ended or `wait` is over, whichever is first.
    pub async fn wait_for_end(self: &Arc<Self>, run_id: &str, wait: Duration) -> Result<(), RunError> {
        let (mut watch, row) = self.watch(run_id).await?;
        if !row.is_ended() {
            let _ = tokio::time::timeout(wait, watch.ended()).await;
        }
        Ok(())
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), RunError> {
        self.store(self.db.ping().await)
    }

    /// What this node's writer has committed so far (benchmark floors).
    pub fn committed(&self) -> crate::store::floor::Committed {
        self.outlets.writer.committed()
    }

    /// The Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, RunError> {
        let counts = self.store(self.db.run_counts().await)?;
        let owned = self.store(self.db.runs_owned(&self.config.node).await)?;
        Ok(self.outlets.metrics.render(
            &counts,
            owned,
            self.live_runs(),
            (self.watched_runs(), self.followed.lock().unwrap().len()),
            self.executor.cache_counts(),
        ))
    }

    /// A compiled module of this server by digest (tests, tools).
    pub async fn module_by_digest(&self, digest: &str) -> Result<Arc<Module>, RunError> {
        self.modules.by_digest(digest).await
    }

    /// Stops starting attempts; waits up to `grace` for attempts in flight
    /// to finish and be committed, then releases this node's runs so they
    /// resume at the next start (on any node).
    pub async fn drain(&self, grace: Duration) {
        self.drain.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                runs = self.live_runs(),
                "grace period over; unfinished attempts will run again on restart"
            );
        }
        if let Err(error) = self.db.release_runs(&self.config.node).await {
            tracing::warn!(%error, "could not release this node's runs; they are taken over when the lease ends");
        }
        self.leave().await;
    }
}
