//! What the run service answers when it cannot do what was asked. Every
//! transport maps these kinds one way (HTTP: `server::error`).

use crate::store::StoreError;
use crate::workflow::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No such run or module (`what` names it: `run 0192...`).
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the resource's state (a run that ended).
    #[error("{0}")]
    Conflict(String),
    /// A conflict with its own problem type (`run-ended`,
    /// `upgrade-diverges`).
    #[error("{message}")]
    Refused { kind: &'static str, message: String },
    /// A value the caller sent is wrong: `field` is the request field at
    /// fault (`input`, `runs`), each error names its full path
    /// (`input.user_id`, `runs[3].input.user_id`).
    #[error("{}", errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    InvalidInput {
        field: String,
        errors: Vec<ValidationError>,
    },
    /// A workflow definition with its located errors.
    #[error("{} error(s) in the workflow definition", .0.len())]
    InvalidWorkflow(Vec<ValidationError>),
    /// No such workflow (or version of it).
    #[error("workflow {0} not found")]
    WorkflowMissing(String),
    /// A module a workflow refers to is not there (or not loadable).
    #[error("{message}")]
    ModuleMissing { field: String, message: String },
    /// A definition sent under another workflow's name.
    #[error("{0}")]
    NameMismatch(String),
    /// The server lacks a setting this request needs (a secrets key).
    #[error("{0}")]
    NotConfigured(String),
    /// The caller's token consumed its daily fuel budget.
    #[error("{0}")]
    BudgetExhausted(String),
    /// A webhook request whose signature is missing or wrong (or an
    /// unsigned one the server refuses).
    #[error("{0}")]
    BadSignature(String),
    /// A body of a media type the route does not take.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// The process is draining for shutdown.
    #[error("the server is shutting down")]
    Unavailable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not happen; logged, not shown.
    #[error("{0}")]
    Internal(String),
}

impl RunError {
    /// An invalid-input error at one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        RunError::InvalidInput {
            errors: vec![ValidationError {
                location: field.clone(),
                message: message.into(),
            }],
            field,
        }
    }
}
