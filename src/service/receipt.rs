//! Run receipts and chain checks: a DSSE envelope whose payload is an
//! in-toto Statement v1 about an ended run (its output as the subject; the
//! workflow, definition, input and module digests, status, events and
//! chain head as the predicate), signed with this node's key; and the
//! check of a run's stored chain, naming the first broken link.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{RunError, Service};
use crate::run::chain::{self, Checked};
use crate::run::state::{RunState, StepStatus};
use crate::signing::{Envelope, IN_TOTO};
use crate::store::chain::NodeKey;

/// The in-toto Statement layout a receipt's payload follows.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// What a receipt's predicate is.
pub const PREDICATE_TYPE: &str = "https://sandstep.dev/receipt/v1";

/// The hex SHA-256 of `text`, as in-toto digests are written.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Service {
    /// Recomputes run `run_id`'s chain from its stored events.
    pub async fn verify_chain(&self, run_id: &str) -> Result<Checked, RunError> {
        let row = self.run_row(run_id).await?;
        self.check_chain(&row).await
    }

    /// The stored chain of the run whose row is `row`, against its head.
    async fn check_chain(&self, row: &crate::store::runs::RunRow) -> Result<Checked, RunError> {
        let events = self.store(self.db.stored_events(&row.id).await)?;
        let mut checked = chain::check(
            &row.id,
            events.iter().map(|e| (e.seq, e.body.as_str(), e.hash.as_deref())),
        );
        if checked.broken.is_none() && checked.head.is_some() && checked.head != row.head {
            checked.broken = Some(format!(
                "the run's head is not its last event's hash (event {})",
                checked.events
            ));
            checked.head = None;
        }
        Ok(checked)
    }

    /// The signed receipt of ended run `run_id`.
    pub async fn receipt(&self, run_id: &str) -> Result<Envelope, RunError> {
        let row = self.run_row(run_id).await?;
        if !row.is_ended() {
            return Err(RunError::Refused {
                kind: "run-not-ended",
                message: format!("run {run_id} is {}: a receipt is for an ended run", row.status),
            });
        }
        let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
        let (source, _) = self.workflow_source(&row.workflow, Some(row.version)).await?;
        let events = self.events(run_id, 0).await?;
        let state = RunState::from_events(run_id, &workflow, &events);
        let checked = self.check_chain(&row).await?;
        if let Some(broken) = &checked.broken {
            return Err(RunError::Refused {
                kind: "chain-broken",
                message: format!("run {run_id}'s stored history does not chain: {broken}"),
            });
        }
        let output = row.output.clone().unwrap_or(Value::Null).to_string();
        let error_kind = state
            .steps
            .values()
            .find(|s| s.status == StepStatus::Failed)
            .and_then(|s| s.error.as_ref().map(|e| e.kind.to_string()))
            .or_else(|| {
                let kind = row.error.as_deref()?.split(": ").next()?;
                kind.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
                    .then(|| kind.to_string())
            });
        let modules: std::collections::BTreeMap<&String, &String> = row.modules.iter().collect();
        let statement = json!({
            "_type": STATEMENT_TYPE,
            "subject": [{ "name": "output", "digest": { "sha256": sha256_hex(&output) } }],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "run": {
                    "id": row.id,
                    "workflow": row.workflow,
                    "version": row.version,
                    "status": row.status,
                    "error_kind": error_kind,
                    "created_ms": row.created_ms,
                    "ended_ms": row.updated_ms,
                },
                "definition": { "sha256": sha256_hex(&source.source) },
                "input": { "sha256": sha256_hex(&row.input.to_string()) },
                "modules": modules,
                "module_digests": super::bundle::modules_used(&row, &state),
                "events": checked.events,
                "chain": match &checked.head {
                    Some(head) => json!({ "head": head }),
                    None => json!({ "head": null, "note": "recorded before hash chains: its events carry no hash" }),
                },
                "node": self.config.node,
                "signed_ms": crate::run::event::now_ms(),
            },
        });
        let payload = serde_json::to_vec(&statement).expect("a statement serializes");
        Ok(self.config.signing.envelope(IN_TOTO, &payload))
    }

    /// Every node's receipt key.
    pub async fn keys(&self) -> Result<Vec<NodeKey>, RunError> {
        self.store(self.db.node_keys().await)
    }
}
