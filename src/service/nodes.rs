//! The nodes serving this store, as this node records and lists them.

use super::{owner, RunError, Service};
use crate::store::nodes::NodeRow;

impl Service {
    /// Records this node alive and listening at `listen` (once bound); the
    /// heartbeat keeps it alive from then on.
    pub async fn announce(&self, listen: &str) -> Result<(), RunError> {
        let until = owner::lease_until(self);
        self.store(self.db.node_seen(&self.config.node, Some(listen), until).await)
    }

    /// The nodes whose lease has not ended.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, RunError> {
        self.store(self.db.live_nodes().await)
    }

    /// This node stops: it is gone from the list at once.
    pub(super) async fn leave(&self) {
        if let Err(error) = self.db.node_gone(&self.config.node).await {
            tracing::warn!(%error, "could not remove this node from the list; it drops off when its lease ends");
        }
    }
}
