//! Moving unfinished runs to another version of their workflow. A run is
//! checked against the version first: a code run's journal is replayed
//! against the version's module (every recorded call must match); a YAML
//! run's started steps must exist in the version with the same module
//! digest and the same dependencies. A run that fits is asked, through its
//! inbox, to move: its owner records `run.upgraded` only if nothing
//! happened to the run since the check (the request names the last event
//! checked), so an event or a cancel racing the upgrade is never lost and
//! never checked against the wrong history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{RunError, Service};
use crate::run::code::replay::{replay, Replayed};
use crate::run::inbox::MessageKind;
use crate::run::state::{RunState, StepStatus};
use crate::run::Event;
use crate::store::inbox::Delivery;
use crate::store::runs::RunRow;
use crate::workflow::{Action, Workflow};

/// How long an upgrade waits for the run's owner to take it.
const TAKE_WITHIN: Duration = Duration::from_secs(30);
/// How often an upgrade is checked again when the run moved on meanwhile.
const ROUNDS: usize = 20;

/// Whether one unfinished run would move to a version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunCheck {
    pub id: String,
    pub status: String,
    pub version: i64,
    /// Whether the run's history fits the version.
    pub upgradable: bool,
    /// Where it does not: the first difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<String>,
}

impl Service {
    /// Moves an unfinished run to `version` of its workflow (the latest
    /// without one) once its history fits it; answers the run as it is
    /// then. A run already at that version is answered as it is.
    pub async fn upgrade(self: &Arc<Self>, run_id: &str, version: Option<i64>) -> Result<RunRow, RunError> {
        let row = self.run_row(run_id).await?;
        let (target, to) = self.workflow(&row.workflow, version).await?;
        for _ in 0..ROUNDS {
            let row = self.run_row(run_id).await?;
            if row.is_ended() {
                return Err(ended(&row));
            }
            if row.version == target {
                return Ok(row);
            }
            let events = self.events(run_id, 0).await?;
            let modules = match self.fits(&row, &events, &to).await? {
                Ok(modules) => modules,
                Err(divergence) => {
                    return Err(RunError::Refused {
                        kind: "upgrade-diverges",
                        message: divergence,
                    })
                }
            };
            let after = events.last().map_or(0, |e| e.seq);
            let message = MessageKind::Upgrade {
                version: target,
                after,
                modules,
            };
            let id = match self.store(self.db.deliver(run_id, &message).await)? {
                Delivery::Stored(id) => id,
                Delivery::NoRun => return Err(RunError::NotFound(format!("run {run_id}"))),
                Delivery::Ended(_) => continue, // answered as ended above
            };
            self.wake(run_id).await;
            self.taken(run_id, id).await?;
            let row = self.run_row(run_id).await?;
            if row.version == target {
                return Ok(row);
            }
            // The run moved on between the check and its owner reading the
            // request (or ended): check it again.
        }
        Err(RunError::Conflict(format!(
            "run {run_id} kept moving on while it was checked; try the upgrade again"
        )))
    }

    /// Waits until the run's owner consumed inbox message `id`, or the run
    /// ended before it did (a cancel delivered just before the upgrade).
    async fn taken(&self, run_id: &str, id: i64) -> Result<(), RunError> {
        let deadline = Instant::now() + TAKE_WITHIN;
        while !self.store(self.db.message_settled(id).await)? {
            if Instant::now() >= deadline {
                return Err(RunError::Refused {
                    kind: "upgrade-pending",
                    message: format!(
                        "run {run_id}'s owner did not take the upgrade within {}s; it is taken when the run next \
                         moves if nothing happened to it meanwhile",
                        TAKE_WITHIN.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Checks every unfinished run of `to`'s workflow against it, changing
    /// nothing: the dry run of an upgrade.
    pub async fn check_runs(&self, to: &Workflow) -> Result<Vec<RunCheck>, RunError> {
        let rows = self.store(self.db.unfinished_runs(&to.name).await)?;
        let mut checks = Vec::with_capacity(rows.len());
        for row in rows {
            let divergence = if row.version == to.version {
                None
            } else {
                let events = self.events(&row.id, 0).await?;
                self.fits(&row, &events, to).await?.err()
            };
            checks.push(RunCheck {
                id: row.id,
                status: row.status,
                version: row.version,
                upgradable: divergence.is_none(),
                divergence,
            });
        }
        Ok(checks)
    }

    /// Validates a definition of workflow `name` as its next version would
    /// be, without storing it.
    pub async fn candidate(&self, name: &str, source: &str) -> Result<Workflow, RunError> {
        let mut catalog = self.modules.catalog().await?;
        let stored = self.store(self.db.list_workflows().await)?;
        catalog.workflows = Some(stored.iter().map(|w| (w.name.clone(), w.version)).collect());
        let mut workflow =
            crate::workflow::load(source, self.caps(), Some(&catalog)).map_err(RunError::InvalidWorkflow)?;
        if workflow.name != name {
            return Err(RunError::NameMismatch(format!(
                "the definition is named {:?} but was sent to /v1/workflows/{name}",
                workflow.name
            )));
        }
        self.check_hooks(name, &workflow.triggers).await?;
        // The version it would be: the latest when it is the latest's text.
        let latest = self.store(self.db.workflow(name, None).await)?;
        workflow.version = match latest {
            Some(latest) if latest.source == source => latest.version,
            Some(latest) => latest.version + 1,
            None => 1,
        };
        Ok(workflow)
    }

    /// Whether the run stored as `row` and `events` fits `to`: the modules
    /// it would be pinned to, or the first difference.
    async fn fits(
        &self,
        row: &RunRow,
        events: &[Event],
        to: &Workflow,
    ) -> Result<Result<BTreeMap<String, String>, String>, RunError> {
        let (_, from) = self.workflow(&row.workflow, Some(row.version)).await?;
        let pinned = self.modules.pin(to).await?;
        let fits = match (&from.code, &to.code) {
            (Some(_), Some(code)) => {
                let module = &pinned.modules[&code.module];
                let replayed = replay(self.executor.sandbox(), module, to, &row.id, events, &code.limits).await;
                match replayed {
                    Replayed::Live { .. } | Replayed::Ended { .. } => Ok(()),
                    Replayed::Diverged(message) => Err(message),
                    Replayed::Failed { kind, message } => Err(format!(
                        "the code of version {} stops replaying the journal: {kind}: {message}",
                        to.version
                    )),
                }
            }
            (Some(_), None) => Err(format!(
                "version {} is a graph of steps and the run's version {} is code",
                to.version, row.version
            )),
            (None, Some(_)) => Err(format!(
                "version {} is code and the run's version {} is a graph of steps",
                to.version, row.version
            )),
            (None, None) => {
                let state = RunState::from_events(&row.id, &from, events);
                steps_fit(&state, &from, &row.modules, to, &pinned.digests)
            }
        };
        Ok(fits.map(|()| pinned.digests.into_iter().collect()))
    }
}

/// A YAML run fits `to` when every step it started exists there, does
/// the same kind of thing (the same module digest, the same child
/// workflow) and depends on the same steps.
fn steps_fit(
    state: &RunState,
    from: &Workflow,
    from_digests: &std::collections::HashMap<String, String>,
    to: &Workflow,
    to_digests: &std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let version = to.version;
    for (id, step) in &state.steps {
        let touched = step.status != StepStatus::Pending
            || step.items.is_some()
            || step
                .units
                .iter()
                .any(|u| u.started > 0 || u.status.is_some() || u.throttled.is_some() || u.child.is_some());
        if !touched {
            continue;
        }
        let (Some(old), Some(new)) = (from.step_index(id), to.step_index(id)) else {
            return Err(format!(
                "step {id:?} has started and version {version} has no such step"
            ));
        };
        let (old, new) = (&from.steps[old], &to.steps[new]);
        let does = |action: &Action, digests: &std::collections::HashMap<String, String>| match action {
            Action::Module { reference, .. } => {
                let digest = digests.get(reference).map_or("?", String::as_str);
                format!("runs module {reference} ({digest})")
            }
            Action::Sleep(_) => "sleeps".to_string(),
            Action::Workflow { name, .. } => format!("runs workflow {name}"),
            Action::Wait { .. } => "waits for an event".to_string(),
        };
        let (before, after) = (does(&old.action, from_digests), does(&new.action, to_digests));
        let same_module = match (&old.action, &new.action) {
            (Action::Module { reference: a, .. }, Action::Module { reference: b, .. }) => {
                from_digests.get(a).is_some() && from_digests.get(a) == to_digests.get(b)
            }
            _ => before == after,
        };
        if !same_module {
            return Err(format!(
                "step {id:?} has started: it {before}, and in version {version} it {after}"
            ));
        }
        let deps = |workflow: &Workflow, indexes: &[usize]| {
            let mut ids: Vec<&str> = indexes.iter().map(|i| workflow.steps[*i].id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.join(", ")
        };
        let (before, after) = (deps(from, &old.deps), deps(to, &new.deps));
        if before != after {
            return Err(format!(
                "step {id:?} has started: it needs [{before}], and in version {version} it needs [{after}]"
            ));
        }
    }
    Ok(())
}

/// The answer for a run that ended.
fn ended(row: &RunRow) -> RunError {
    RunError::Refused {
        kind: "run-ended",
        message: format!("run {} already ended ({})", row.id, row.status),
    }
}
