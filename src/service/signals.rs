//! Wake-ups from other nodes, and following runs they execute.
//!
//! On PostgreSQL every node listens on the store's notification channel
//! (`store::notify`): new events of a run (its watchers here read them),
//! an inbox message (its owner reads it), runs free to claim, `throttle:`
//! slots given back. Notifications are only a shortcut: a lost one (a
//! dropped connection) is made good by polling, every second, for the
//! same things.
//!
//! A watched run (an event stream, `?wait`, a cancel) that this node does
//! not execute is followed: its events are read from the store after the
//! last one read, when told or every second, and handed to its watchers as
//! if they were appended here, until nobody watches or it ends. A run this
//! node holds while it is paused is not read every second: only this node
//! appends to it (see [`Service::follow`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Service;
use crate::store::notify::{Listener, Received, Signal};
use crate::store::Location;

/// How often followed runs and inboxes are read without a notification.
const POLL: Duration = Duration::from_secs(1);
/// How often a followed run this node holds (paused here) is read without
/// a notification: another node can only have taken it after this node's
/// lease ran out, and that node's appends notify.
const HELD_POLL: Duration = Duration::from_secs(30);

/// Listens for other nodes' notifications on PostgreSQL (connecting again
/// each second while it cannot), and polls the inboxes of this node's runs
/// as the fallback.
pub(super) fn listen(service: &Arc<Service>) {
    let Location::Postgres(url) = service.db.location().clone() else {
        return;
    };
    let weak: Weak<Service> = Arc::downgrade(service);
    let drain = service.drain.clone();
    tokio::spawn(async move {
        let mut listener = None;
        let mut poll = tokio::time::interval(POLL);
        loop {
            if listener.is_none() {
                match Listener::connect(&url).await {
                    Ok(connected) => listener = Some(connected),
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for other nodes; polling every second until it can")
                    }
                }
            }
            let received = tokio::select! {
                _ = drain.cancelled() => return,
                _ = poll.tick() => None,
                received = async {
                    match listener.as_mut() {
                        Some(listener) => listener.next().await,
                        None => std::future::pending().await,
                    }
                } => Some(received),
            };
            let Some(service) = weak.upgrade() else { return };
            match received {
                None => service.poll_inboxes().await,
                Some(Ok(Some(signal))) => service.signaled(signal),
                Some(Ok(None)) => {}
                // The connection dropped: it reconnects at the next
                // receive; what was sent meanwhile is found by polling.
                Some(Err(Received::Dropped)) => service.poll_inboxes().await,
                Some(Err(Received::Failed(error))) => {
                    tracing::warn!(%error, "lost the notification channel; polling until it is back");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    });
}

impl Service {
    fn signaled(self: &Arc<Self>, signal: Signal) {
        match signal {
            Signal::Events(run_id) => {
                if let Some(wake) = self.followed.lock().unwrap().get(&run_id) {
                    wake.notify_one();
                }
            }
            Signal::Inbox(run_id) => {
                let service = self.clone();
                tokio::spawn(async move { service.wake(&run_id).await });
            }
            Signal::Runs => self.claimable.notify_one(),
            Signal::Throttle => {
                if let Some(throttle) = self.executor.throttle() {
                    throttle.released_elsewhere();
                }
            }
            Signal::Workflows => self.workflows_changed(),
        }
    }

    /// Hands this node's runs the inbox messages they have not seen (the
    /// fallback for a lost notification).
    async fn poll_inboxes(self: &Arc<Self>) {
        match self.db.runs_with_messages(&self.config.node).await {
            Ok(runs) => {
                for run_id in runs {
                    self.wake(&run_id).await;
                }
            }
            Err(error) => {
                self.outlets.metrics.store_error();
                tracing::error!(%error, "cannot look for inbox messages");
            }
        }
    }

    /// Follows a watched run this node does not execute (see the module
    /// documentation); nothing when it runs here or is followed already.
    /// A run this node holds (`held`: paused here) is appended to only by
    /// this node once it starts again, and its watchers hear of that
    /// directly: on SQLite, where no other node takes it, it is not
    /// followed; on PostgreSQL it is read only when notified or every
    /// [`HELD_POLL`] (thousands of paused runs watched here cost no reads).
    pub(super) fn follow(self: &Arc<Self>, run_id: &str, from: u64, held: bool) {
        if self.live.lock().unwrap().contains_key(run_id) {
            return;
        }
        let poll = match (held, self.db.location()) {
            (false, _) => POLL,
            (true, Location::Postgres(_)) => HELD_POLL,
            (true, _) => return,
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        {
            let mut followed = self.followed.lock().unwrap();
            if followed.contains_key(run_id) {
                return;
            }
            followed.insert(run_id.to_string(), wake.clone());
        }
        let weak: Weak<Service> = Arc::downgrade(self);
        let run_id = run_id.to_string();
        let drain = self.drain.clone();
        tokio::spawn(async move {
            let mut read = from;
            loop {
                let Some(service) = weak.upgrade() else { return };
                if !service.outlets.watchers.watched(&run_id) {
                    break;
                }
                let live_here = service.live.lock().unwrap().contains_key(&run_id);
                if !live_here {
                    match service.db.events(&run_id, read).await {
                        Ok(events) => {
                            let ended = events.iter().any(|e| e.kind.is_final());
                            if let Some(last) = events.last() {
                                read = last.seq;
                            }
                            service.outlets.watchers.publish(&events);
                            if ended {
                                break;
                            }
                        }
                        Err(error) => {
                            service.outlets.metrics.store_error();
                            tracing::error!(run = %run_id, %error, "cannot read the followed run's events");
                        }
                    }
                }
                drop(service);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = drain.cancelled() => break,
                }
            }
            if let Some(service) = weak.upgrade() {
                service.followed.lock().unwrap().remove(&run_id);
            }
        });
    }
}
