//! Turning a workflow version and a start request into a run ready to
//! execute: the one start sequence of the server (single and batch starts)
//! and of `sandstep run`.

use std::sync::Arc;

use serde_json::Value;

use super::modules::Pinned;
use crate::run::{Event, Executor, RunSpec, RunState, Secrets};
use crate::workflow::{ValidationError, Workflow};

/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What a client asks to start.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub input: Value,
    pub idempotency_key: Option<String>,
}

/// A run checked and ready: its spec, its first event and the state after it.
pub struct Ready {
    pub spec: RunSpec,
    pub queued: Event,
    pub state: RunState,
    pub idempotency_key: Option<String>,
}

/// Checks `request` against `workflow` (input declarations, idempotency
/// key) and builds the run under a new id. Errors are located at the
/// request's fields (`input.user_id`, `idempotency_key`).
pub fn prepare(
    workflow: &Arc<Workflow>,
    pinned: &Pinned,
    secrets: &Arc<Secrets>,
    request: RunRequest,
) -> Result<Ready, Vec<ValidationError>> {
    let mut errors = Vec::new();
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY {
            errors.push(ValidationError {
                location: "idempotency_key".into(),
                message: format!("idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
            });
        }
    }
    let input = match crate::workflow::inputs::check(&workflow.inputs, &request.input) {
        Ok(input) => Some(input),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    let Some(input) = input.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let spec = RunSpec {
        run_id: uuid::Uuid::now_v7().to_string(),
        workflow: workflow.clone(),
        modules: pinned.modules.clone(),
        secrets: secrets.clone(),
    };
    let queued = Executor::queued(&spec, input);
    let mut state = RunState::new(&spec.run_id, workflow);
    state.apply(&queued);
    Ok(Ready {
        spec,
        queued,
        state,
        idempotency_key: request.idempotency_key,
    })
}
