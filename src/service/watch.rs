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
/// Appends buffered per watched run (each append's events are one
/// message, however many: a run that commits 80 events at once is one).
const CAPACITY: usize = 32;

#[derive(Default)]
pub struct Watchers {
    runs: Mutex<HashMap<String, broadcast::Sender<Arc<[Event]>>>>,
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
            batch: None,
            watchers: self.clone(),
        }
    }

    /// Hands one run's `events` (in order) to its watchers as one message,
    /// copied only when someone watches; a final event closes the run's
    /// entry (watchers receive the events, then the end of the stream).
    pub fn publish(&self, events: &[Event]) {
        let Some(first) = events.first() else { return };
        let mut runs = self.runs.lock().unwrap();
        if events.iter().any(|e| e.kind.is_final()) {
            if let Some(sender) = runs.remove(&first.run_id) {
                let _ = sender.send(events.into());
            }
        } else if let Some(sender) = runs.get(&first.run_id) {
            let _ = sender.send(events.into());
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
    receiver: Option<broadcast::Receiver<Arc<[Event]>>>,
    /// The append being handed out, and how far.
    batch: Option<(Arc<[Event]>, usize)>,
    watchers: Arc<Watchers>,
}

impl Watch {
    /// The next event; `Ok(None)` once the run has ended (after its final
    /// event) or the stream closed; `Err(n)` when `n` appends' events
    /// were missed.
    pub async fn next(&mut self) -> Result<Option<Event>, u64> {
        loop {
            if let Some((events, at)) = &mut self.batch {
                if let Some(event) = events.get(*at) {
                    *at += 1;
                    return Ok(Some(event.clone()));
                }
                self.batch = None;
            }
            let Some(receiver) = self.receiver.as_mut() else {
                return Ok(None);
            };
            match receiver.recv().await {
                Ok(events) => self.batch = Some((events, 0)),
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
                Err(broadcast::error::RecvError::Lagged(missed)) => return Err(missed),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::event::EventKind;

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            run_id: "r".into(),
            at_ms: 0,
            kind,
        }
    }

    /// A run that commits more events at once than a watcher buffers (a
    /// chain of cache hits: 80 events in one append) is watched whole.
    #[tokio::test]
    async fn an_append_larger_than_the_buffer_reaches_its_watchers_whole() {
        let watchers = Arc::new(Watchers::default());
        let mut watch = watchers.watch("r");
        let mut events: Vec<Event> = (1..100)
            .map(|seq| {
                event(
                    seq,
                    EventKind::StepSkipped {
                        step: format!("s{seq}"),
                        reason: "when".into(),
                    },
                )
            })
            .collect();
        watchers.publish(&events[..10]);
        events.push(event(
            100,
            EventKind::RunCompleted {
                output: serde_json::json!(1),
            },
        ));
        watchers.publish(&events[10..]);
        let mut seen = Vec::new();
        while let Some(event) = watch.next().await.expect("nothing missed") {
            seen.push(event.seq);
        }
        assert_eq!(seen, (1..=100).collect::<Vec<u64>>());
        assert!(watchers.is_empty(), "the final event closed the run's entry");
    }
}
