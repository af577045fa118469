//! Live listeners per run, behind one notifier: event streams (SSE) and
//! "tell me when the run ends" (`?wait`, cancel) are both a [`Watch`].
//!
//! An entry exists only while someone watches a run that has not ended:
//! the run's final event removes it, and the last [`Watch`] of a run
//! removes it when dropped, so watching an unknown or ended run leaves
//! nothing behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::run::Event;

/// Events buffered per run for slow watchers; a watcher that falls further
/// behind is told it lagged and reads the store.
const CAPACITY: usize = 32;

#[derive(Default)]
pub struct Watchers {
    runs: Mutex<HashMap<String, broadcast::Sender<Event>>>,
}

impl Watchers {
    /// Events of `run_id` published from now on. Watch first, then read
    /// what is stored: nothing falls in between.
    pub fn watch(self: &Arc<Self>, run_id: &str) -> Watch {
        let receiver = self
            .runs
            .lock()
            .unwrap()
            .entry(run_id.to_string())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe();
        Watch {
            run_id: run_id.to_string(),
            receiver: Some(receiver),
            watchers: self.clone(),
        }
    }

    /// Hands `event` to its run's watchers; a final event closes the run's
    /// entry (watchers receive it, then the end of the stream).
    pub fn publish(&self, event: &Event) {
        let mut runs = self.runs.lock().unwrap();
        if event.kind.is_final() {
            if let Some(sender) = runs.remove(&event.run_id) {
                let _ = sender.send(event.clone());
            }
        } else if let Some(sender) = runs.get(&event.run_id) {
            let _ = sender.send(event.clone());
        }
    }

    /// Whether `run_id` has a watcher.
    pub fn watched(&self, run_id: &str) -> bool {
        self.runs.lock().unwrap().contains_key(run_id)
    }

    /// Runs with at least one watcher (`/metrics`: `sandstep_watched_runs`).
    pub fn len(&self) -> usize {
        self.runs.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One listener on one run.
pub struct Watch {
    run_id: String,
    receiver: Option<broadcast::Receiver<Event>>,
    watchers: Arc<Watchers>,
}

impl Watch {
    /// The next event; `Ok(None)` once the run has ended (after its final
    /// event) or the stream closed; `Err(n)` when `n` events were missed.
    pub async fn next(&mut self) -> Result<Option<Event>, u64> {
        let Some(receiver) = self.receiver.as_mut() else {
            return Ok(None);
        };
        match receiver.recv().await {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::RecvError::Closed) => Ok(None),
            Err(broadcast::error::RecvError::Lagged(missed)) => Err(missed),
        }
    }

    /// Resolves when the run's final event is published (or was, since
    /// this watch began).
    pub async fn ended(&mut self) {
        loop {
            match self.next().await {
                Ok(Some(event)) if event.kind.is_final() => return,
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => return,
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut runs = self.watchers.runs.lock().unwrap();
        if runs.get(&self.run_id).is_some_and(|s| s.receiver_count() == 0) {
            runs.remove(&self.run_id);
        }
    }
}
