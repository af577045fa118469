//! This node's id and its leases. A node owns the runs it starts (within
//! its `--max-runs`) and the ones it claims: its own from before a restart,
//! and, every second or when told some are free, runs nobody holds (left
//! by a start beyond a node's capacity, released by a clean stop, or under
//! an ended lease). Its runs are held by its own lease (its `nodes` row),
//! which a heartbeat renews each third of the lease.

use std::path::Path;
use std::sync::{Arc, Weak};

use super::Service;

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
