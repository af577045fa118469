//! This node's id and its leases. A node owns the runs it starts (within
//! its `--max-runs`) and the ones it claims: its own from before a restart,
//! and, every second or when told some are free, runs nobody holds (left
//! by a start beyond a node's capacity, released by a clean stop, or under
//! an ended lease). Its runs are held by its own lease (its `nodes` row),
//! which a heartbeat renews each third of the lease.

use std::path::Path;
use std::sync::{Arc, Weak};

use super::{journal::RunJournal, RunError, Service};
use crate::run::inbox::Message;
use crate::run::{Event, EventKind, RunSpec, RunState};
use crate::store::runs::{Lease, RunRow};

/// The file in the data directory that keeps this node's id across
/// restarts, so a restarted node reclaims its own runs at once.
pub const NODE_ID_FILE: &str = "node-id";

/// This data directory's node id, created on first use.
pub fn node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) | Err(_) => {
            std::fs::create_dir_all(data_dir)?;
            let id = format!("node-{}", uuid::Uuid::now_v7());
            crate::files::write_atomic(&path, id.as_bytes())?;
            Ok(id)
        }
    }
}

/// When a lease taken or renewed now ends (ms since the epoch).
pub(super) fn lease_until(service: &Service) -> i64 {
    crate::store::now_ms() + service.config.lease.as_millis() as i64
}

/// Renews this node's leases every third of the lease until the service
/// is dropped or drains.
pub(super) fn heartbeat(service: &Arc<Service>) {
    let weak: Weak<Service> = Arc::downgrade(service);
    let period = (service.config.lease / 3).max(std::time::Duration::from_millis(100));
    let drain = service.drain.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = drain.cancelled() => return,
            }
            let Some(service) = weak.upgrade() else { return };
            let until = lease_until(&service);
            if let Err(error) = service.db.node_seen(&service.config.node, None, until).await {
                service.outlets.metrics.store_error();
                tracing::error!(%error, "cannot renew this node's lease");
            }
        }
    });
}

/// How often a node looks for runs nobody holds when nothing told it.
const CLAIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Claims runs nobody holds, up to this node's room, every second and when
/// told some are free, until the service is dropped or drains.
pub(super) fn claimer(service: &Arc<Service>) {
    let weak: Weak<Service> = Arc::downgrade(service);
    let drain = service.drain.clone();
    let claimable = service.claimable.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CLAIM_EVERY) => {}
                _ = claimable.notified() => {}
                _ = drain.cancelled() => return,
            }
            let Some(service) = weak.upgrade() else { return };
            if let Err(error) = service.claim_free().await {
                tracing::error!(%error, "cannot claim free runs");
            }
        }
    });
}

impl Service {
    /// Drives a stored run again from its events, under `lease`, with the
    /// inbox messages it has not consumed.
    pub(super) async fn resume(
        self: &Arc<Self>,
        row: &RunRow,
        events: &[Event],
        lease: Lease,
        pending: Vec<Message>,
    ) -> Result<(), RunError> {
        let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
        let state = RunState::from_events(&row.id, &workflow, events);
        let pinned = self.modules.load_pinned(&row.modules).await?;
        let spec = RunSpec {
            run_id: row.id.clone(),
            workflow,
            modules: pinned.modules,
            secrets: self.vault.current(),
        };
        tracing::info!(run = %row.id, status = %row.status, events = events.len(), inbox = pending.len(), "resuming run");
        self.spawn(spec, state, lease, row.head.as_deref(), pending, events);
        Ok(())
    }

    /// Claims again the runs this node owned before a restart, then as
    /// many runs nobody holds as it has room for, and resumes them (at
    /// start-up; [`owner::claimer`] goes on claiming).
    pub async fn recover(self: &Arc<Self>) -> Result<usize, RunError> {
        // The node's lease first: the runs it owns are held while it lasts.
        let until = lease_until(self);
        self.store(self.db.node_seen(&self.config.node, None, until).await)?;
        let own = self.store(self.db.claim_own(&self.config.node).await)?;
        let mut count = self.take_up(own).await?;
        count += self.claim_free().await?;
        Ok(count)
    }

    /// Claims up to this node's room of runs nobody holds and resumes them.
    pub(super) async fn claim_free(self: &Arc<Self>) -> Result<usize, RunError> {
        let room = self.config.max_runs.saturating_sub(self.live_runs());
        if room == 0 || self.drain.is_cancelled() {
            return Ok(0);
        }
        let claimed = self.store(self.db.claim_free(&self.config.node, room as i64).await)?;
        self.take_up(claimed).await
    }

    /// Resumes claimed runs from their events, with the requests still in
    /// their inboxes. A run that cannot be resumed (its workflow or a
    /// pinned module no longer loads) is failed with the reason, so one bad
    /// run never keeps the server from starting.
    async fn take_up(self: &Arc<Self>, claimed: crate::store::claims::Claimed) -> Result<usize, RunError> {
        let (claimed, taken_over) = claimed;
        self.outlets.metrics.lease_takeovers(taken_over);
        let count = claimed.len();
        let now = crate::store::now_ms();
        for (row, lease) in claimed {
            // The alarm or a posted event may be starting it already.
            if !self.begin_start(&row.id, true) {
                continue;
            }
            let run_id = row.id.clone();
            let result = self.take_up_one(row, lease, now).await;
            self.end_start(&run_id).await;
            result?;
        }
        Ok(count)
    }

    /// Resumes one claimed run unless it only waits for a message or a
    /// timer not yet due; fails it when it cannot be resumed.
    async fn take_up_one(self: &Arc<Self>, row: RunRow, lease: Lease, now: i64) -> Result<(), RunError> {
        let pending = self.store(self.db.pending_messages(&row.id).await)?;
        if row.status == "paused" && pending.is_empty() && row.wake_ms.is_none_or(|at| at > now) {
            return Ok(()); // nothing to do until a message or its timer
        }
        let events = self.store(self.db.events(&row.id, 0).await)?;
        if let Err(error) = self.resume(&row, &events, lease.clone(), pending).await {
            let reason = match error {
                RunError::NotFound(what) => format!("cannot resume: {what} no longer exists"),
                RunError::WorkflowMissing(what) => format!("cannot resume: workflow {what} no longer exists"),
                RunError::InvalidWorkflow(errors) => {
                    format!("cannot resume: the workflow version is invalid: {}", errors[0])
                }
                other => format!("cannot resume: {other}"),
            };
            tracing::error!(run = %row.id, %reason, "failing a run that cannot be resumed");
            let failed = Event {
                seq: events.last().map_or(1, |e| e.seq + 1),
                run_id: row.id.clone(),
                at_ms: crate::run::event::now_ms(),
                kind: EventKind::RunFailed { error: reason },
            };
            // Its end gives back whatever throttle slots it held.
            let journal = RunJournal::new(self.outlets.clone(), row.id.clone(), lease, true, row.head.as_deref());
            crate::run::Journal::append(&journal, std::slice::from_ref(&failed))
                .await
                .map_err(|e| RunError::Internal(e.to_string()))?;
        }
        Ok(())
    }
}
