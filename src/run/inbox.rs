//! Requests to a run: messages that arrive from outside (a cancel, a posted
//! event its waits may match). They are stored as rows before the request
//! is answered, and the run's owner consumes each one in the same commit as
//! the events it causes, so an accepted request is never lost.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One stored request to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The inbox row, in arrival order.
    pub id: i64,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageKind {
    /// Stop the run: running attempts are interrupted, the run ends `canceled`.
    Cancel { reason: String },
    /// An event of a topic one of the run's steps waits (or may wait) for.
    Event { event: PostedEvent },
    /// A child run of one of the run's sub-workflow steps ended.
    ChildEnded {
        child: String,
        /// `completed`, `failed` or `canceled`.
        status: String,
        output: Option<Value>,
        error: Option<String>,
    },
    /// Move the run to version `version` of its workflow, pinned to
    /// `modules`: checked against its events up to seq `after`, so taken
    /// only when the run has not moved on since (otherwise consumed and
    /// left, and the requester checks again).
    Upgrade {
        version: i64,
        after: u64,
        modules: std::collections::BTreeMap<String, String>,
    },
}

/// An event posted to the engine (`POST /v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostedEvent {
    pub id: String,
    pub topic: String,
    pub data: Value,
    pub posted_ms: u64,
    /// The W3C `traceparent` it was posted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl MessageKind {
    /// The stored `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            MessageKind::Cancel { .. } => "cancel",
            MessageKind::Event { .. } => "event",
            MessageKind::ChildEnded { .. } => "child_ended",
            MessageKind::Upgrade { .. } => "upgrade",
        }
    }
}
