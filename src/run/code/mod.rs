//! Code workflows' journal: what each call of the code records
//! ([`CallRecord`], in `workflow.called` events), how a new call is checked
//! against the recorded one (a mismatch is `nondeterminism`), and the host
//! the code's instance talks to ([`host::CodeHost`]): it answers recorded
//! calls from the journal and sends the rest to the run's driver.
//!
//! One journal, two front ends: a code run's step-like calls (`step`,
//! `child`, `sleep`, `wait`) are steps named by the call, with the same
//! events as a YAML run's steps; the other calls (`now`, `random`,
//! `patched`, `await-next`, `start-child`) only record their answer.

pub mod host;
pub mod replay;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What one call of workflow code asked for, and what the host answered
/// where the answer is not a step's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallRecord {
    /// A module step: the reference as the code wrote it, the digest it
    /// was pinned to (empty when it could not be resolved), the input and
    /// its digest, the options.
    Step {
        module: String,
        #[serde(default)]
        digest: String,
        input_digest: String,
        input: Value,
        #[serde(default)]
        options: Value,
    },
    /// A sub-workflow run, awaited like a step.
    Child {
        workflow: String,
        input_digest: String,
        input: Value,
        #[serde(default)]
        options: Value,
    },
    /// A run of another workflow, started and not awaited.
    StartChild {
        workflow: String,
        input_digest: String,
        run_id: String,
    },
    Sleep {
        duration_ms: u64,
    },
    Wait {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    Now {
        value: u64,
    },
    Random {
        value: u64,
    },
    /// `patched(id)` answered true here.
    Patched {
        id: String,
    },
    /// `await-next` answered with this call.
    Await {
        returned: u32,
    },
}

impl CallRecord {
    /// Whether the call is a step of the run (named, with an outcome).
    pub fn is_step(&self) -> bool {
        matches!(
            self,
            CallRecord::Step { .. } | CallRecord::Child { .. } | CallRecord::Sleep { .. } | CallRecord::Wait { .. }
        )
    }

    /// The call's kind as workflow code names it.
    pub fn kind(&self) -> &'static str {
        match self {
            CallRecord::Step { .. } => "step",
            CallRecord::Child { .. } => "child",
            CallRecord::StartChild { .. } => "start-child",
            CallRecord::Sleep { .. } => "sleep",
            CallRecord::Wait { .. } => "wait-for-event",
            CallRecord::Now { .. } => "now",
            CallRecord::Random { .. } => "random",
            CallRecord::Patched { .. } => "patched",
            CallRecord::Await { .. } => "await-next",
        }
    }

    /// The step kind the run resource shows for a step-like call.
    pub fn step_kind(&self) -> Option<&'static str> {
        match self {
            CallRecord::Step { .. } => Some("module"),
            CallRecord::Child { .. } => Some("workflow"),
            CallRecord::Sleep { .. } => Some("sleep"),
            CallRecord::Wait { .. } => Some("wait"),
            _ => None,
        }
    }

    /// Whether `new` (a call the code makes now) is the call recorded as
    /// `self`: the same kind, and for steps and children the same target
    /// and input, for waits the same topic. Answers (`now`'s value, the
    /// digest a step was pinned to) are the journal's, not compared.
    fn same_call(&self, new: &CallRecord) -> bool {
        match (self, new) {
            (
                CallRecord::Step {
                    module: a,
                    input_digest: x,
                    ..
                },
                CallRecord::Step {
                    module: b,
                    input_digest: y,
                    input,
                    ..
                },
            ) => a == b && (x == y || *x == written_digest(input)),
            (
                CallRecord::Child {
                    workflow: a,
                    input_digest: x,
                    ..
                },
                CallRecord::Child {
                    workflow: b,
                    input_digest: y,
                    input,
                    ..
                },
            ) => a == b && (x == y || *x == written_digest(input)),
            (
                CallRecord::StartChild {
                    workflow: a,
                    input_digest: x,
                    ..
                },
                CallRecord::StartChild {
                    workflow: b,
                    input_digest: y,
                    ..
                },
            ) => a == b && x == y,
            (CallRecord::Sleep { .. }, CallRecord::Sleep { .. }) => true,
            (CallRecord::Wait { topic: a, .. }, CallRecord::Wait { topic: b, .. }) => a == b,
            (CallRecord::Now { .. }, CallRecord::Now { .. })
            | (CallRecord::Random { .. }, CallRecord::Random { .. }) => true,
            (CallRecord::Patched { id: a }, CallRecord::Patched { id: b }) => a == b,
            (CallRecord::Await { .. }, CallRecord::Await { .. }) => true,
            _ => false,
        }
    }

    /// The call as a message names it: `step "charge" (payments:v1@sha256:ab12…, input sha256:9f86…)`.
    pub fn describe(&self, name: Option<&str>) -> String {
        let named = |kind: &str| match name {
            Some(name) => format!("{kind} {name:?}"),
            None => kind.to_string(),
        };
        match self {
            CallRecord::Step {
                module,
                digest,
                input_digest,
                ..
            } => {
                let pinned = if digest.is_empty() {
                    String::new()
                } else {
                    format!("@{}", short(digest))
                };
                format!("{} ({module}{pinned}, input {})", named("step"), short(input_digest))
            }
            CallRecord::Child {
                workflow, input_digest, ..
            }
            | CallRecord::StartChild {
                workflow, input_digest, ..
            } => format!(
                "{} (workflow {workflow}, input {})",
                named(self.kind()),
                short(input_digest)
            ),
            CallRecord::Wait { topic, .. } => format!("{} (topic {topic:?})", named("wait-for-event")),
            CallRecord::Patched { id } => format!("patched({id:?})"),
            other => named(other.kind()),
        }
    }
}

/// `sha256:ab12cd34…`: enough of a digest to tell two apart in a message.
fn short(digest: &str) -> String {
    let cut = digest
        .char_indices()
        .nth("sha256:".len() + 12)
        .map_or(digest.len(), |(i, _)| i);
    if cut < digest.len() {
        format!("{}…", &digest[..cut])
    } else {
        digest.to_string()
    }
}

/// `sha256:<hex>` of a call's input, as canonical JSON text (object keys
/// in the order the code wrote them: the same code writes the same order).
pub fn input_digest(input: &Value) -> String {
    // The cache's canonical text (keys sorted, numbers normalized): two
    // inputs that differ only in key order (code in two languages building
    // the same object) digest alike.
    let text = crate::run::cache::canonical(input);
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The digest journals recorded before digests were canonical: the input's
/// text in the order the code wrote it. Replay accepts either.
fn written_digest(input: &Value) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(input.to_string().as_bytes())))
}

/// Where a code run's calls find their modules by reference: the server's
/// store, or the local commands' files and store.
pub trait ModuleSource: Send + Sync {
    fn resolve<'a>(
        &'a self,
        reference: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<std::sync::Arc<crate::sandbox::Module>, String>> + Send + 'a>,
    >;
}

/// The outcome a call returns to the code, from its step's state, once
/// the step ended (a wait returns its event: `{"id", "data"}`).
pub fn outcome(step: &crate::run::state::StepState, call: &CallRecord) -> Option<crate::sandbox::CallResult> {
    use crate::run::event::ErrorKind;
    use crate::run::state::StepStatus;
    use crate::sandbox::CallFailure;
    match step.status {
        StepStatus::Succeeded => {
            let output = step.output.clone().unwrap_or(Value::Null);
            Some(Ok(match call {
                CallRecord::Wait { .. } => serde_json::json!({ "id": step.event, "data": output }).to_string(),
                _ => output.to_string(),
            }))
        }
        StepStatus::Failed => {
            let error = step.error.clone()?;
            Some(Err(CallFailure {
                kind: error.kind.as_str().to_string(),
                message: error.message,
            }))
        }
        StepStatus::Skipped | StepStatus::Canceled => Some(Err(CallFailure {
            kind: ErrorKind::Canceled.as_str().into(),
            message: step.reason.clone().unwrap_or_else(|| "the call was canceled".into()),
        })),
        _ => None,
    }
}

/// The seed of a run's WASI randomness in its workflow code.
pub(crate) fn seed_of(run_id: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(run_id.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A call's input as recorded and compared on replay: the JSON the code
/// passed, or (not JSON) its text as a JSON string, so that the live
/// record and the replayed call agree; the driver fails such a call.
pub fn call_input(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// One recorded call: its position (1, 2, ...), its name (step-like calls
/// and `start-child`), what it was and when (ms) it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    pub position: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub call: CallRecord,
    pub at_ms: u64,
}

/// Checks the call the code makes at `recorded.position` against the
/// journal: `Err` with the `nondeterminism` message when they differ.
pub fn check_replay(recorded: &RecordedCall, name: Option<&str>, new: &CallRecord) -> Result<(), String> {
    if recorded.name.as_deref() == name && recorded.call.same_call(new) {
        return Ok(());
    }
    Err(format!(
        "call {}: recorded {}, got {}",
        recorded.position,
        recorded.call.describe(recorded.name.as_deref()),
        new.describe(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(module: &str, input: Value) -> CallRecord {
        CallRecord::Step {
            module: module.into(),
            digest: String::new(),
            input_digest: input_digest(&input),
            input,
            options: Value::Null,
        }
    }

    #[test]
    fn a_different_call_at_a_recorded_position_is_named_with_both() {
        let recorded = RecordedCall {
            position: 7,
            name: Some("charge".into()),
            call: match step("payments:v1", serde_json::json!({"amount": 10})) {
                CallRecord::Step {
                    module,
                    input_digest,
                    input,
                    options,
                    ..
                } => CallRecord::Step {
                    module,
                    digest: "sha256:ab12ab12ab12ab12ab12ab12".into(),
                    input_digest,
                    input,
                    options,
                },
                other => other,
            },
            at_ms: 0,
        };
        let same = step("payments:v1", serde_json::json!({"amount": 10}));
        assert_eq!(check_replay(&recorded, Some("charge"), &same), Ok(()));
        let message = check_replay(&recorded, Some("refund"), &same).unwrap_err();
        assert!(
            message.starts_with("call 7: recorded step \"charge\" (payments:v1@sha256:ab12ab12ab12…, input sha256:"),
            "{message}"
        );
        assert!(
            message.contains(", got step \"refund\" (payments:v1, input sha256:"),
            "{message}"
        );
        let other_input = step("payments:v1", serde_json::json!({"amount": 11}));
        assert!(check_replay(&recorded, Some("charge"), &other_input).is_err());
    }

    #[test]
    fn inputs_that_differ_only_in_key_order_are_the_same_call_and_old_digests_still_match() {
        let written: Value =
            serde_json::from_str(r#"{"op":"ship","order":{"id":"o-1","items":[{"b":2,"a":1}]}}"#).unwrap();
        let sorted: Value =
            serde_json::from_str(r#"{"order":{"items":[{"a":1,"b":2}],"id":"o-1"},"op":"ship"}"#).unwrap();
        assert_eq!(input_digest(&written), input_digest(&sorted));
        let recorded = |call| RecordedCall {
            position: 1,
            name: Some("ship".into()),
            call,
            at_ms: 0,
        };
        assert_eq!(
            check_replay(&recorded(step("s", written.clone())), Some("ship"), &step("s", sorted)),
            Ok(())
        );
        // A journal recorded when the digest was of the text as written.
        let old = match step("s", written.clone()) {
            CallRecord::Step {
                module,
                input,
                options,
                digest,
                ..
            } => CallRecord::Step {
                module,
                digest,
                input_digest: written_digest(&input),
                input,
                options,
            },
            other => other,
        };
        assert_ne!(written_digest(&written), input_digest(&written));
        assert_eq!(
            check_replay(&recorded(old.clone()), Some("ship"), &step("s", written)),
            Ok(())
        );
        let other = serde_json::json!({ "op": "ship", "order": { "id": "o-2" } });
        assert!(check_replay(&recorded(old), Some("ship"), &step("s", other)).is_err());
    }
}
