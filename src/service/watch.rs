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

/// A run's events in order after a given seq: the stored ones first, then
/// live ones as they are appended, ending after the run's final event.
/// What a slow reader missed is read back from the store.
pub struct Following {
    service: Arc<super::Service>,
    run_id: String,
    live: Watch,
    last: u64,
    buffer: std::collections::VecDeque<Event>,
    done: bool,
}

impl super::Service {
    /// Follows `run_id`'s events after seq `after` (0: from its first;
    /// `None`: from now, those stored after the watch began).
    pub async fn follow_events(
        self: &Arc<Self>,
        run_id: &str,
        after: Option<u64>,
    ) -> Result<Following, super::RunError> {
        // Watch before reading what is stored, so nothing falls in between.
        let (live, row) = self.watch(run_id).await?;
        let after = match after {
            Some(after) => after,
            None => self.store(self.db.last_seq(run_id).await)?,
        };
        let stored = self.events(run_id, after).await?;
        Ok(Following {
            service: self.clone(),
            run_id: run_id.to_string(),
            live,
            last: after,
            done: row.is_ended() && stored.is_empty(),
            buffer: stored.into(),
        })
    }
}

impl Following {
    /// The next event, or `None` once the final one was given (or the store
    /// cannot be read).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                if event.seq <= self.last {
                    continue;
                }
                self.last = event.seq;
                self.done |= event.kind.is_final();
                return Some(event);
            }
            if self.done {
                return None;
            }
            match self.live.next().await {
                Ok(Some(event)) => self.buffer.push_back(event),
                // Fell behind: what was missed is stored.
                Err(_) => self
                    .buffer
                    .extend(self.service.events(&self.run_id, self.last).await.ok()?),
                // The run ended: anything not yet given is stored.
                Ok(None) => {
                    let rest = self.service.events(&self.run_id, self.last).await.ok()?;
                    if rest.is_empty() {
                        return None;
                    }
                    self.buffer.extend(rest);
                }
            }
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
