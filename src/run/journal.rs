//! The journal: the one narrow interface through which every change of a run
//! leaves the executor. A durable store implements [`Journal`] by committing
//! the events before `append` returns; the executor never lets a dependent
//! start before the outcome it depends on was appended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use super::event::Event;

pub type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;

/// Why events were not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The run moved on without this writer (another owner, a newer fence,
    /// or a later sequence): nothing was written, and this process must
    /// stop driving the run.
    #[error("the run is no longer this process's to write: {0}")]
    Conflict(String),
    /// The store failed; nothing was written.
    #[error("cannot record run events: {0}")]
    Store(String),
}

pub trait Journal: Send + Sync {
    /// Records `events` (consecutive, in order) durably before resolving.
    fn append<'a>(&'a self, events: &'a [Event]) -> AppendFuture<'a>;

    /// Records `events` and, in the same commit, marks the inbox messages
    /// `consumed` (the requests these events answer). Journals without an
    /// inbox record the events alone.
    fn append_consuming<'a>(&'a self, events: &'a [Event], consumed: &'a [i64]) -> AppendFuture<'a> {
        let _ = consumed;
        self.append(events)
    }
}

/// Keeps events in memory and hands each batch to an optional listener (the
/// CLI's progress display): for local runs, where nothing outlives the process.
#[derive(Default)]
pub struct MemoryJournal {
    events: Mutex<Vec<Event>>,
    listener: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
}

impl MemoryJournal {
    pub fn new() -> Self {
        MemoryJournal::default()
    }

    /// A journal that also sends every event to `listener`.
    pub fn with_listener(listener: tokio::sync::mpsc::UnboundedSender<Event>) -> Self {
        MemoryJournal {
            events: Mutex::new(Vec::new()),
            listener: Some(listener),
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl Journal for MemoryJournal {
    fn append<'a>(&'a self, events: &'a [Event]) -> AppendFuture<'a> {
        let mut stored = self.events.lock().unwrap();
        stored.extend_from_slice(events);
        if let Some(listener) = &self.listener {
            for event in events {
                // A listener that went away only stops the display.
                let _ = listener.send(event.clone());
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
