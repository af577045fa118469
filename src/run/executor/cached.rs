//! `cache:` steps: each round, the units ready to start look their keys up
//! together; a hit succeeds the unit with the recorded output (a
//! `step.cached` event, no wasm), a miss starts its attempt, and a missed
//! unit's successful output is recorded under its key.

use std::sync::Arc;

use super::{Driver, Executor};
use crate::run::cache::{CacheEntry, StepCache};
use crate::run::event::{now_ms, EventKind};
use crate::workflow::Action;

impl Executor {
    /// Cache hits and misses so far.
    pub fn cache_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.cache_stats.hits.load(Relaxed),
            self.cache_stats.misses.load(Relaxed),
        )
    }

    /// Where `cache:` steps keep their outputs, when they do.
    pub fn cache(&self) -> Option<&Arc<dyn StepCache>> {
        self.cache.as_ref()
    }

    /// Gives `cache:` steps a place to keep outputs.
    pub fn with_cache(mut self, cache: Arc<dyn StepCache>) -> Self {
        self.cache = Some(cache);
        self
    }
}

impl Driver<'_> {
    /// Records the outputs of the round, then looks up the units that
    /// [`Driver::start_attempt`] held back: misses start at once, and the
    /// steps a hit made ready are scheduled (and looked up) in turn.
    pub(super) async fn cache_round(&mut self) {
        // Most rounds have nothing to look up or record: no Arc clone then.
        if self.cache_puts.is_empty() && self.lookups.is_empty() {
            return;
        }
        let Some(cache) = self.executor.cache.clone() else {
            return;
        };
        if !self.cache_puts.is_empty() {
            let puts = std::mem::take(&mut self.cache_puts);
            if let Err(error) = cache.put_many(puts).await {
                tracing::warn!(run = %self.state.run_id, %error, "cannot record cached outputs");
            }
        }
        while !self.lookups.is_empty() && self.state.status == crate::run::RunStatus::Running {
            self.look_up(cache.as_ref()).await;
        }
    }

    async fn look_up(&mut self, cache: &dyn crate::run::cache::StepCache) {
        let lookups = std::mem::take(&mut self.lookups);
        let keys: Vec<String> = lookups.iter().map(|(_, _, key)| key.clone()).collect();
        let found = cache.get_many(&keys, now_ms()).await.unwrap_or_else(|error| {
            tracing::warn!(run = %self.state.run_id, %error, "cache lookup failed; the steps run");
            vec![None; keys.len()]
        });
        let (mut hits, mut misses) = (0, 0);
        for ((index, item, key), hit) in lookups.into_iter().zip(found) {
            if self.state.steps[index].status.is_terminal() {
                continue; // another item of the step failed meanwhile
            }
            match hit {
                Some(hit) => {
                    hits += 1;
                    self.emit(EventKind::StepCached {
                        step: self.id(index).to_string(),
                        item,
                        cached_from: hit.run_id,
                    });
                    self.succeed_unit(index, item, None, hit.output);
                }
                None => {
                    misses += 1;
                    self.missed.insert((index, item), key);
                    self.queued[index].push_front(item);
                }
            }
        }
        self.executor.cache_stats.count(hits, misses);
        if hits > 0 {
            self.schedule();
        }
        self.launch();
    }

    /// A missed unit succeeded: its output is recorded under its key at the
    /// next round.
    pub(super) fn record_cached(&mut self, index: usize, item: Option<usize>, output: &serde_json::Value) {
        let Some(key) = self.missed.remove(&(index, item)) else {
            return;
        };
        let step = &self.workflow.steps[index];
        let (Some(policy), Action::Module { reference, .. }) = (&step.cache, &step.action) else {
            return;
        };
        let Some(module) = self.spec.modules.get(reference) else {
            return;
        };
        let created_ms = now_ms();
        self.cache_puts.push(CacheEntry {
            key,
            module: module_name(reference),
            digest: module.info.digest.clone(),
            output: output.clone(),
            run_id: self.state.run_id.clone(),
            created_ms,
            expires_ms: policy.ttl.map(|ttl| created_ms + ttl.as_millis() as u64),
        });
    }
}

/// The name part of a module reference (`echo` of `echo:v1` or
/// `echo@sha256:...`); a bare digest stays a digest.
fn module_name(reference: &str) -> String {
    if reference.starts_with("sha256:") {
        return reference.to_string();
    }
    reference.split([':', '@']).next().unwrap_or(reference).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn module_names_come_from_references() {
        assert_eq!(super::module_name("echo:v1"), "echo");
        assert_eq!(super::module_name("echo@sha256:ab"), "echo");
        assert_eq!(super::module_name("sha256:ab"), "sha256:ab");
    }
}
