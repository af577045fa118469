//! Starting runs: turning a workflow version and a start request into a
//! run ready to execute (`prepare`, shared with `sandstep run`), and the
//! service's single and batch starts, which store runs through the
//! group-commit writer and spawn them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::modules::Pinned;
use super::view::{run_view, RunView};
use super::watch::Watch;
use super::{RunError, Service, Started};
use crate::run::event::Origin;
use crate::run::{Event, Executor, RunSpec, RunState, Secrets};
use crate::store::runs::{Inserted, Lease, NewRun};
use crate::workflow::{ValidationError, Workflow};

/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What a client asks to start.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub input: Value,
    pub idempotency_key: Option<String>,
    /// Where the run comes from besides a client (a re-run, a trigger).
    pub origin: Origin,
    /// The start request's `budget.fuel`; the definition's may be smaller.
    pub budget_fuel: Option<u64>,
    /// The token that asks (its usage, its daily budget); `None` for a
    /// server without tokens, triggers and child runs.
    pub caller: Option<super::Caller>,
}

/// The workflow version a start runs, and the modules it pins.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    /// `None`: the latest version.
    pub version: Option<i64>,
    /// Module digests pinned already (a re-run keeps its run's); `None`:
    /// pinned now.
    pub pinned: Option<&'a HashMap<String, String>>,
}

impl<'a> Target<'a> {
    /// The latest version of `name`, with modules pinned now.
    pub fn latest(name: &'a str) -> Self {
        Target {
            name,
            version: None,
            pinned: None,
        }
    }
}

/// A run checked and ready: its spec, its first event and the state after it.
pub struct Ready {
    pub spec: RunSpec,
    pub queued: Event,
    pub state: RunState,
    pub idempotency_key: Option<String>,
}

/// An idempotency key (of a run or an event) is 1 to 200 characters.
pub fn check_idempotency_key(key: &str) -> Result<(), ValidationError> {
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY {
        return Err(ValidationError {
            location: "idempotency_key".into(),
            message: format!("idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        });
    }
    Ok(())
}

/// Checks `request` against `workflow` (input declarations, idempotency
/// key) and builds the run under a new id. Errors are located at the
/// request's fields (`input.user_id`, `idempotency_key`).
pub fn prepare(
    workflow: &Arc<Workflow>,
    pinned: &Pinned,
    secrets: &Arc<Secrets>,
    request: RunRequest,
) -> Result<Ready, Vec<ValidationError>> {
    let mut errors = Vec::new();
    if let Some(key) = &request.idempotency_key {
        errors.extend(check_idempotency_key(key).err());
    }
    let input = match crate::workflow::inputs::check(&workflow.inputs, &request.input) {
        Ok(input) => Some(input),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    let Some(input) = input.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let spec = RunSpec {
        run_id: uuid::Uuid::now_v7().to_string(),
        workflow: workflow.clone(),
        modules: pinned.modules.clone(),
        secrets: secrets.clone(),
    };
    let mut origin = request.origin;
    if let Some(caller) = request.caller {
        origin.token = Some(caller.token);
    }
    origin.budget_fuel = match (workflow.budget_fuel, request.budget_fuel) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let queued = Executor::queued_from(&spec, input, origin);
    let mut state = RunState::new(&spec.run_id, workflow);
    state.apply(&queued);
    Ok(Ready {
        spec,
        queued,
        state,
        idempotency_key: request.idempotency_key,
    })
}

/// A run a start request stored (or found), as the start sequence hands it
/// back: watched from before it started when asked, with its first event.
pub(super) struct Launched {
    pub started: Started,
    watch: Option<Watch>,
    queued: Option<Event>,
}

impl Service {
    /// The version each sub-workflow step of `workflow` will start: its own
    /// `version`, or the latest now. A workflow that is missing now is left
    /// out: its step fails when it starts, naming it.
    async fn pin_subworkflows(&self, workflow: &Workflow) -> std::collections::BTreeMap<String, i64> {
        let mut pins = std::collections::BTreeMap::new();
        for step in &workflow.steps {
            if let crate::workflow::Action::Workflow { name, version } = &step.action {
                let version = match version {
                    Some(version) => Some(*version),
                    None => self.workflow(name, None).await.ok().map(|(version, _)| version),
                };
                if let Some(version) = version {
                    pins.insert(name.clone(), version);
                }
            }
        }
        pins
    }

    /// Starts a run of the latest version of `name`; with `wait`, answers
    /// once the run has ended or `wait` is over. A new run is watched
    /// before it starts, so its end cannot slip by unseen; when every one
    /// of its events was seen by the end, the run resource comes with the
    /// answer, built from those events without reading them back.
    /// Without `wait`, a new run comes with its resource as stored
    /// (queued); an existing run (the same idempotency key) without.
    pub async fn start(
        self: &Arc<Self>,
        name: &str,
        request: RunRequest,
        wait: Option<Duration>,
    ) -> Result<(Started, Option<RunView>), RunError> {
        self.start_one(Target::latest(name), request, wait).await
    }

    /// [`Service::start`] of a chosen version, with chosen pins.
    pub(super) async fn start_one(
        self: &Arc<Self>,
        target: Target<'_>,
        request: RunRequest,
        wait: Option<Duration>,
    ) -> Result<(Started, Option<RunView>), RunError> {
        let (workflow, mut started) = self.start_runs(target, vec![request], false, wait.is_some()).await?;
        let Launched { started, watch, queued } = started.remove(0);
        let Some(wait) = wait else {
            // A run just stored is answered as stored (queued), without
            // reading it back; an existing run is read by the caller.
            let view = queued.map(|queued| run_view(started.run.clone(), &workflow, &[queued]));
            return Ok((started, view));
        };
        let (Some(mut watch), Some(queued)) = (watch, queued) else {
            self.wait_for_end(&started.run.id, wait).await?;
            return Ok((started, None));
        };
        let mut events = vec![queued];
        let seen_all = tokio::time::timeout(wait, async {
            loop {
                match watch.next().await {
                    Ok(Some(event)) => {
                        let last = event.kind.is_final();
                        events.push(event);
                        if last {
                            return true;
                        }
                    }
                    // Missed events (or a closed stream): read them back.
                    Ok(None) | Err(_) => {
                        watch.ended().await;
                        return false;
                    }
                }
            }
        })
        .await
        .unwrap_or(false);
        let contiguous = events.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1);
        if !(seen_all && contiguous) {
            return Ok((started, None));
        }
        let mut row = started.run.clone();
        row.follow(&events);
        Ok((started, Some(run_view(row, &workflow, &events))))
    }

    /// Starts a batch of runs of the latest version of `name`, all or
    /// nothing: every item is checked first (any invalid item refuses the
    /// whole batch, naming each item's index and field), then all are
    /// stored in one transaction.
    pub async fn start_batch(
        self: &Arc<Self>,
        name: &str,
        requests: Vec<RunRequest>,
    ) -> Result<Vec<Started>, RunError> {
        if requests.is_empty() {
            return Err(RunError::invalid("runs", "a batch needs at least one run"));
        }
        if requests.len() > self.config.max_batch {
            return Err(RunError::invalid(
                "runs",
                format!(
                    "a batch holds at most {} runs (this one has {})",
                    self.config.max_batch,
                    requests.len()
                ),
            ));
        }
        let (_, launched) = self.start_runs(Target::latest(name), requests, true, false).await?;
        Ok(launched.into_iter().map(|l| l.started).collect())
    }

    pub(super) async fn start_runs(
        self: &Arc<Self>,
        target: Target<'_>,
        requests: Vec<RunRequest>,
        batch: bool,
        watch: bool,
    ) -> Result<(Arc<Workflow>, Vec<Launched>), RunError> {
        if self.drain.is_cancelled() {
            return Err(RunError::Unavailable);
        }
        let name = target.name;
        let (version, workflow) = self.workflow(name, target.version).await?;
        let pinned = match target.pinned {
            Some(digests) => self.modules.load_pinned(digests).await?,
            None => self.modules.pin(&workflow).await?,
        };
        let subworkflows = self.pin_subworkflows(&workflow).await;
        let mut requests = requests;
        // A token's daily budget: refused once spent, else each run capped
        // at what is left of it.
        if let Some(caller) = requests.first().and_then(|r| r.caller.clone()) {
            if let Some(left) = self.fuel_left(&caller).await? {
                for request in &mut requests {
                    request.budget_fuel = Some(request.budget_fuel.map_or(left, |b| b.min(left)));
                }
            }
        }
        let mut ready = Vec::with_capacity(requests.len());
        let mut errors = Vec::new();
        for (index, mut request) in requests.into_iter().enumerate() {
            if request.origin.workflows.is_empty() {
                request.origin.workflows = subworkflows.clone();
            }
            let at = |location: &str| {
                if batch {
                    format!("runs[{index}].{location}")
                } else {
                    location.to_string()
                }
            };
            match prepare(&workflow, &pinned, &self.vault.current(), request) {
                Ok(run) => ready.push(run),
                Err(found) => errors.extend(found.into_iter().map(|e| ValidationError {
                    location: at(&e.location),
                    message: e.message,
                })),
            }
        }
        if !errors.is_empty() {
            let field = if batch { "runs" } else { "input" };
            let field = match errors.first() {
                Some(e) if !batch && e.location == "idempotency_key" => "idempotency_key",
                _ => field,
            };
            return Err(RunError::InvalidInput {
                field: field.into(),
                errors,
            });
        }
        let new_runs: Vec<NewRun> = ready
            .iter()
            .map(|r| NewRun {
                id: r.spec.run_id.clone(),
                workflow: name.to_string(),
                version,
                idempotency_key: r.idempotency_key.clone(),
                modules: pinned.digests.clone(),
                queued: r.queued.clone(),
            })
            .collect();
        // Beyond this node's capacity, the runs are left for any node.
        let owned = self.live_runs() + new_runs.len() <= self.config.max_runs;
        let inserted = self.store(self.outlets.writer.start_runs(new_runs, owned).await)?;
        if !owned {
            self.claimable.notify_one();
        }
        let mut out = Vec::with_capacity(inserted.len());
        for (run, inserted) in ready.into_iter().zip(inserted) {
            match inserted {
                Inserted::New(row) => {
                    self.outlets.metrics.observe(&run.queued);
                    let lease = Lease {
                        node: self.config.node.clone(),
                        fence: 1,
                    };
                    let watch = watch.then(|| self.outlets.watchers.watch(&row.id));
                    let queued = run.queued.clone();
                    if owned {
                        self.spawn(run.spec, run.state, lease, row.head.as_deref(), Vec::new(), &[]);
                    } else if watch.is_some() {
                        self.follow(&row.id, 0, false);
                    }
                    out.push(Launched {
                        started: Started {
                            run: row,
                            created: true,
                        },
                        watch,
                        queued: Some(queued),
                    });
                }
                Inserted::Existing(row) => out.push(Launched {
                    started: Started {
                        run: row,
                        created: false,
                    },
                    watch: None,
                    queued: None,
                }),
            }
        }
        Ok((workflow, out))
    }
}
