//! Paused runs and posted events. A paused run holds no task: its driver
//! returned once nothing could happen but a wait ending. It is started
//! again ([`Service::revive`]) when a message reaches its inbox (a posted
//! event, a cancel) or when its first timer is due ([`alarm`], which also
//! purges events past their retention).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{RunError, Service};
use crate::store::events::{Posted, StoredEvent};

/// The longest the alarm sleeps without looking for due runs, and the
/// shortest it waits between two rounds.
const ALARM_MAX_SLEEP: Duration = Duration::from_secs(1);
const ALARM_MIN_SLEEP: Duration = Duration::from_millis(20);
/// How often events past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);

impl Service {
    /// Starts a run that is not running in this process from its events and
    /// inbox, if no other node holds it. Does nothing while draining, for a
    /// run already live, or one that has ended; asked while the run is
    /// being started, it has that start look at the inbox again when done.
    pub(super) async fn revive(self: &Arc<Self>, run_id: &str) {
        if self.drain.is_cancelled() || !self.begin_start(run_id, false) {
            return;
        }
        let result = self.revive_claimed(run_id).await;
        if let Err(error) = &result {
            tracing::error!(run = %run_id, %error, "cannot start the paused run again; it is tried again at the next start");
        }
        self.end_start(run_id).await;
    }

    /// Marks a run as being started by this process: false when another
    /// start is under way (which is then told to look at the inbox again,
    /// since it may have read it before a new message), or when it is live
    /// here, unless it was just `claimed` (under a new fence: a driver
    /// still running it here is stale and stops at its next append).
    pub(super) fn begin_start(&self, run_id: &str, claimed: bool) -> bool {
        let mut starting = self.reviving.lock().unwrap();
        if let Some(again) = starting.get_mut(run_id) {
            *again = true;
            return false;
        }
        if !claimed && self.live.lock().unwrap().contains_key(run_id) {
            return false;
        }
        starting.insert(run_id.to_string(), false);
        true
    }

    /// Ends [`Service::begin_start`]; a message that arrived meanwhile is
    /// handed to the run now (its driver, or a new start).
    pub(super) async fn end_start(self: &Arc<Self>, run_id: &str) {
        let again = self.reviving.lock().unwrap().remove(run_id).unwrap_or(false);
        if again && !self.drain.is_cancelled() {
            Box::pin(self.wake(run_id)).await;
        }
    }

    async fn revive_claimed(self: &Arc<Self>, run_id: &str) -> Result<(), RunError> {
        // A run this node holds (the usual case: it paused here) needs no
        // claim; the fence it holds guards its appends.
        let found = self.store(self.db.run_with_lease(run_id).await)?;
        let (row, lease) = match found {
            None => return Ok(()),
            Some((row, Some(lease))) if lease.node == self.config.node => (row, lease),
            Some(_) => {
                match self.store(self.db.claim_run(run_id, &self.config.node).await)? {
                    Some((row, lease, taken_over)) => {
                        if taken_over {
                            self.outlets.metrics.lease_takeovers(1);
                        }
                        (row, lease)
                    }
                    None => return Ok(()), // ended, or another node holds it
                }
            }
        };
        if row.is_ended() {
            return Ok(());
        }
        let events = self.events(run_id, 0).await?;
        let pending = self.store(self.db.pending_messages(run_id).await)?;
        self.resume(&row, &events, lease, pending).await
    }

    /// A paused run's driver returned: the alarm learns of its timer, and a
    /// message that reached its inbox meanwhile starts it again at once.
    pub(super) async fn parked(self: &Arc<Self>, run_id: &str) {
        self.alarm.notify_one();
        match self.db.pending_messages(run_id).await {
            Ok(pending) if !pending.is_empty() => self.revive(run_id).await,
            Ok(_) => {}
            Err(error) => {
                self.outlets.metrics.store_error();
                tracing::error!(run = %run_id, %error, "cannot read the paused run's inbox; it is read again at the next start");
            }
        }
    }

    /// Stores an event (once per idempotency key) and hands it to every run
    /// waiting for its topic. Answers once it is stored.
    pub async fn post_event(
        self: &Arc<Self>,
        topic: &str,
        data: &serde_json::Value,
        idempotency_key: Option<&str>,
        traceparent: Option<&str>,
    ) -> Result<Posted, RunError> {
        crate::workflow::check_topic(topic).map_err(|message| RunError::invalid("topic", message))?;
        if let Some(key) = idempotency_key {
            super::start::check_idempotency_key(key).map_err(|e| RunError::invalid("idempotency_key", e.message))?;
        }
        let event = crate::store::events::NewEvent {
            topic: topic.to_string(),
            data: data.clone(),
            idempotency_key: idempotency_key.map(str::to_string),
            retention_ms: self.config.event_retention.as_millis() as i64,
            traceparent: traceparent.map(str::to_string),
        };
        let posted = self.store(self.outlets.writer.post_event(event).await)?;
        if posted.created {
            self.triggered.notify_one();
        }
        for run_id in &posted.runs {
            let service = self.clone();
            let run_id = run_id.clone();
            tokio::spawn(async move { service.wake(&run_id).await });
        }
        Ok(posted)
    }

    /// Events newest first (one page: `limit` + 1 rows tell whether more follow).
    pub async fn list_events(
        &self,
        topic: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, RunError> {
        self.store(self.db.list_posted_events(topic, before, limit).await)
    }
}

/// Starts paused runs of this node when their first timer is due, and
/// purges expired events, until the service drains or is dropped.
pub(super) fn alarm(service: &Arc<Service>) {
    let weak: Weak<Service> = Arc::downgrade(service);
    let drain = service.drain.clone();
    let notified = service.alarm.clone();
    tokio::spawn(async move {
        let mut last_purge = std::time::Instant::now();
        loop {
            let Some(service) = weak.upgrade() else { return };
            let now = crate::store::now_ms();
            let next = match service.db.due_runs(&service.config.node, now).await {
                Ok(due) => {
                    for run_id in due {
                        let service = service.clone();
                        tokio::spawn(async move { service.revive(&run_id).await });
                    }
                    service.db.next_wake(&service.config.node).await
                }
                Err(error) => Err(error),
            };
            let sleep = match next {
                Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now).max(0) as u64),
                Ok(None) => ALARM_MAX_SLEEP,
                Err(error) => {
                    service.outlets.metrics.store_error();
                    tracing::error!(%error, "cannot look for paused runs that are due");
                    ALARM_MAX_SLEEP
                }
            };
            if last_purge.elapsed() >= PURGE_EVERY {
                last_purge = std::time::Instant::now();
                if let Err(error) = service.db.purge_posted_events().await {
                    tracing::warn!(%error, "cannot purge expired events");
                }
            }
            drop(service);
            tokio::select! {
                _ = tokio::time::sleep(sleep.clamp(ALARM_MIN_SLEEP, ALARM_MAX_SLEEP)) => {}
                _ = notified.notified() => tokio::time::sleep(ALARM_MIN_SLEEP).await,
                _ = drain.cancelled() => return,
            }
        }
    });
}
