//! Prometheus metrics: runs by status, attempts by outcome, step duration,
//! instantiate time, queue depth, watched runs, store errors, cache hits
//! and misses, runs this node owns, leases it took over and refused
//! webhook requests.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::run::{AttemptRecord, Event, EventKind};

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Gauge>,
    attempts: Family<Labels, Counter>,
    step_seconds: Histogram,
    instantiate_seconds: Histogram,
    queue_depth: Gauge,
    watched_runs: Gauge,
    followed_runs: Gauge,
    store_errors: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    runs_owned: Gauge,
    lease_takeovers: Counter,
    webhook_rejected: Family<Labels, Counter>,
    /// The executor's hits and misses already counted.
    cache_seen: std::sync::Mutex<(u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<Labels, Gauge>::default();
        let attempts = Family::<Labels, Counter>::default();
        let step_seconds = Histogram::new(exponential_buckets(0.000_01, 4.0, 12));
        let instantiate_seconds = Histogram::new(exponential_buckets(0.000_001, 4.0, 12));
        let queue_depth = Gauge::default();
        let watched_runs = Gauge::default();
        let followed_runs = Gauge::default();
        let store_errors = Counter::default();
        registry.register("sandstep_runs", "Runs by status", runs.clone());
        registry.register(
            "sandstep_attempts",
            "Step attempts by outcome (succeeded, or the error kind)",
            attempts.clone(),
        );
        registry.register(
            "sandstep_step_duration_seconds",
            "Duration of step attempts",
            step_seconds.clone(),
        );
        registry.register(
            "sandstep_instantiate_seconds",
            "Time to instantiate a module for an attempt",
            instantiate_seconds.clone(),
        );
        registry.register(
            "sandstep_queue_depth",
            "Runs accepted and not yet finished by this process",
            queue_depth.clone(),
        );
        registry.register(
            "sandstep_watched_runs",
            "Runs with a live listener (event stream or wait)",
            watched_runs.clone(),
        );
        registry.register(
            "sandstep_followed_runs",
            "Watched runs read from the store because another node executes them",
            followed_runs.clone(),
        );
        registry.register(
            "sandstep_store_errors",
            "Store failures and stored rows that could not be decoded",
            store_errors.clone(),
        );
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        registry.register(
            "sandstep_cache_hits",
            "Cached steps (or items) that reused a recorded output",
            cache_hits.clone(),
        );
        registry.register(
            "sandstep_cache_misses",
            "Cached steps (or items) that found no output and ran",
            cache_misses.clone(),
        );
        let runs_owned = Gauge::default();
        let lease_takeovers = Counter::default();
        registry.register(
            "sandstep_runs_owned",
            "Unfinished runs this node holds under a live lease",
            runs_owned.clone(),
        );
        registry.register(
            "sandstep_lease_takeovers",
            "Runs this node took over from another node whose lease had ended",
            lease_takeovers.clone(),
        );
        let webhook_rejected = Family::<Labels, Counter>::default();
        registry.register(
            "sandstep_webhook_rejected",
            "Webhook requests refused, by hook and reason (nothing of them stored)",
            webhook_rejected.clone(),
        );
        Metrics {
            webhook_rejected,
            runs_owned,
            lease_takeovers,
            cache_hits,
            cache_misses,
            cache_seen: Default::default(),
            registry,
            watched_runs,
            followed_runs,
            store_errors,
            runs,
            attempts,
            step_seconds,
            instantiate_seconds,
            queue_depth,
        }
    }
}

impl Metrics {
    /// Counts what an event records.
    pub fn observe(&self, event: &Event) {
        let record = match &event.kind {
            EventKind::StepSucceeded {
                record: Some(record), ..
            }
            | EventKind::ItemSucceeded {
                record: Some(record), ..
            } => record,
            EventKind::StepRetrying { record, .. }
            | EventKind::StepFailed {
                record: Some(record), ..
            } => record,
            _ => return,
        };
        self.attempt(record);
    }

    fn attempt(&self, record: &AttemptRecord) {
        let outcome = record
            .error
            .as_ref()
            .map_or("succeeded", |e| e.kind.as_str())
            .to_string();
        self.attempts
            .get_or_create(&vec![("outcome".to_string(), outcome)])
            .inc();
        self.step_seconds.observe(record.duration_us as f64 / 1e6);
        self.instantiate_seconds.observe(record.instantiate_us as f64 / 1e6);
    }

    /// Counts runs taken over from expired leases (`sandstep_lease_takeovers_total`).
    pub fn lease_takeovers(&self, count: u64) {
        self.lease_takeovers.inc_by(count);
    }

    /// Counts a refused webhook request (`sandstep_webhook_rejected_total`).
    pub fn webhook_rejected(&self, hook: &str, reason: &str) {
        self.webhook_rejected
            .get_or_create(&vec![
                ("hook".to_string(), hook.to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
            .inc();
    }

    /// Counts one store failure (`sandstep_store_errors_total`).
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// The text exposition, with run counts, queue depth, watched (and
    /// followed) runs and
    /// the executor's cache hits and misses as of now.
    pub fn render(
        &self,
        run_counts: &[(String, i64)],
        runs_owned: i64,
        live_runs: usize,
        (watched_runs, followed_runs): (usize, usize),
        cache: (u64, u64),
    ) -> String {
        {
            let mut seen = self.cache_seen.lock().expect("metrics lock");
            self.cache_hits.inc_by(cache.0.saturating_sub(seen.0));
            self.cache_misses.inc_by(cache.1.saturating_sub(seen.1));
            *seen = cache;
        }
        self.runs.clear();
        for status in crate::run::RunStatus::ALL.map(|s| s.as_str()) {
            let count = run_counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            self.runs
                .get_or_create(&vec![("status".to_string(), status.to_string())])
                .set(count);
        }
        self.queue_depth.set(live_runs as i64);
        self.runs_owned.set(runs_owned);
        self.watched_runs.set(watched_runs as i64);
        self.followed_runs.set(followed_runs as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
