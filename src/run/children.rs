//! Sub-workflows as the executor sees them: a way to start child runs and
//! to cancel them, given by whoever hosts the run (the service). A child
//! reports its end through its parent's inbox ([`super::inbox`]).

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::event::Origin;

/// One child run to start.
#[derive(Debug, Clone)]
pub struct ChildStart {
    pub workflow: String,
    /// `None`: the latest version.
    pub version: Option<i64>,
    pub input: Value,
    /// The same for every start of one unit of one parent run, so that a
    /// start repeated after a crash answers the child started before.
    pub idempotency_key: String,
    /// The parent run, its step and the workflows above it.
    pub origin: Origin,
}

pub type ChildFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Children: Send + Sync {
    /// Starts each child (or finds the one started before with its key):
    /// its run id, or why it cannot start.
    fn start(&self, children: Vec<ChildStart>) -> ChildFuture<'_, Vec<Result<String, String>>>;

    /// Asks each run to cancel (durably); runs that ended are left alone.
    fn cancel(&self, runs: Vec<String>, reason: String) -> ChildFuture<'_, ()>;
}
