//! The service's side of sub-workflows: child runs start like any run
//! (idempotently, under a key derived from the parent's unit) and are
//! canceled through their inbox; a child that ends wakes its parent.

use std::sync::{Arc, Weak};

use super::start::{RunRequest, Target};
use super::Service;
use crate::run::children::{ChildFuture, ChildStart, Children};
use crate::run::inbox::MessageKind;

/// [`Children`] for the runs of one service.
pub(super) struct ServiceChildren(pub Weak<Service>);

impl Children for ServiceChildren {
    fn start(&self, children: Vec<ChildStart>) -> ChildFuture<'_, Vec<Result<String, String>>> {
        Box::pin(async move {
            let Some(service) = self.0.upgrade() else {
                return children
                    .iter()
                    .map(|_| Err("the server is stopping".to_string()))
                    .collect();
            };
            let starts = children.into_iter().map(|child| {
                let service = service.clone();
                async move {
                    let target = Target {
                        name: &child.workflow,
                        version: child.version,
                        pinned: None,
                    };
                    let request = RunRequest {
                        budget_fuel: None,
                        caller: None,
                        input: child.input,
                        idempotency_key: Some(child.idempotency_key),
                        origin: child.origin,
                    };
                    service
                        .start_runs(target, vec![request], false, false)
                        .await
                        .map(|(_, mut launched)| launched.remove(0).started.run.id)
                        .map_err(|error| error.to_string())
                }
            });
            futures_util::future::join_all(starts).await
        })
    }

    fn cancel(&self, runs: Vec<String>, reason: String) -> ChildFuture<'_, ()> {
        Box::pin(async move {
            let Some(service) = self.0.upgrade() else { return };
            for run in runs {
                let message = MessageKind::Cancel { reason: reason.clone() };
                // A child that ended already answers 409: nothing to do.
                if let Err(error) = service.deliver(&run, message).await {
                    tracing::debug!(run = %run, %error, "child run not canceled");
                }
            }
        })
    }
}

impl Service {
    /// The child runs' handle for a run's driver.
    pub(super) fn children(self: &Arc<Self>) -> Arc<dyn Children> {
        Arc::new(ServiceChildren(Arc::downgrade(self)))
    }
}
