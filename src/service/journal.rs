//! The durable journal of one run: each append is a conditional write
//! through the group-commit [`Writer`], by this node under the fence it
//! holds the run with, after the run's last known event. Committed events
//! then reach the run's watchers and the metrics.

use std::sync::{Arc, Mutex};

use super::metrics::Metrics;
use super::watch::Watchers;
use crate::run::chain::Hash;
use crate::run::journal::AppendFuture;
use crate::run::{Event, Journal, JournalError};
use crate::store::runs::{Append, Lease};
use crate::store::writer::{AppendError, Writer};

/// What every run's journal of this process shares.
pub struct Outlets {
    pub writer: Writer,
    pub watchers: Arc<Watchers>,
    pub metrics: Arc<Metrics>,
    /// Spans from committed events (`serve --otlp-endpoint`).
    pub tracer: Option<crate::telemetry::Tracer>,
}

impl Outlets {
    /// A run's driver starts: its trace (if traces are exported) opens,
    /// from what the run has stored so far.
    pub fn trace_open(&self, spec: &crate::run::RunSpec, state: &crate::run::RunState, history: &[Event]) {
        if let Some(tracer) = &self.tracer {
            tracer.open(crate::telemetry::run_info(spec, state), history);
        }
    }

    /// A run's driver stopped: its trace state goes.
    pub fn trace_close(&self, run_id: &str) {
        if let Some(tracer) = &self.tracer {
            tracer.close(run_id);
        }
    }
}

/// One run's journal, holding the run under `lease`.
pub struct RunJournal {
    pub outlets: Arc<Outlets>,
    pub run_id: String,
    pub lease: Lease,
    /// Whether the run's workflow throttles (`throttle:`).
    pub throttled: bool,
    /// The run's chain head: its last stored event's hash (none for a run
    /// recorded before chains, whose events stay unchained).
    pub head: Mutex<Option<Hash>>,
}

impl RunJournal {
    /// The journal of `run_id` held under `lease`, whose chain head is
    /// `head` as stored (hex).
    pub fn new(outlets: Arc<Outlets>, run_id: String, lease: Lease, throttled: bool, head: Option<&str>) -> Self {
        RunJournal {
            outlets,
            run_id,
            lease,
            throttled,
            head: Mutex::new(head.and_then(crate::run::chain::parse)),
        }
    }
}

impl Journal for RunJournal {
    fn append<'a>(&'a self, events: &'a [Event]) -> AppendFuture<'a> {
        self.append_consuming(events, &[])
    }

    fn append_consuming<'a>(&'a self, events: &'a [Event], consumed: &'a [i64]) -> AppendFuture<'a> {
        Box::pin(async move {
            let expected_seq = events.first().map_or(0, |e| e.seq.saturating_sub(1));
            let head = *self.head.lock().unwrap();
            let append = Append::new(
                self.run_id.clone(),
                self.lease.clone(),
                expected_seq,
                events.to_vec(),
                consumed.to_vec(),
                self.throttled,
                head.as_ref(),
            );
            let new_head = append.head().and_then(crate::run::chain::parse);
            match self.outlets.writer.append(append).await {
                Ok(()) => *self.head.lock().unwrap() = new_head,
                Err(AppendError::Refused(refused)) => return Err(JournalError::Conflict(refused.reason)),
                Err(AppendError::Store(message)) => {
                    self.outlets.metrics.store_error();
                    return Err(JournalError::Store(message));
                }
            }
            for event in events {
                self.outlets.metrics.observe(event);
            }
            self.outlets.watchers.publish(events);
            if let Some(tracer) = &self.outlets.tracer {
                tracer.events(&self.run_id, events);
            }
            Ok(())
        })
    }
}
