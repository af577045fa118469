//! Running workflows: events ([`event`]), the run state they fold into
//! ([`state`]), the journal every change passes through ([`journal`]),
//! secrets and their redaction ([`secrets`]), module resolution for local
//! runs ([`local`]) and the executor that drives a run ([`executor`]).

pub mod event;
pub mod executor;
pub mod journal;
pub mod local;
pub mod secrets;
pub mod state;

pub use event::{AttemptRecord, Event, EventKind, StepError};
pub use executor::{Executor, RunSpec};
pub use journal::{Journal, JournalError, MemoryJournal};
pub use secrets::Secrets;
pub use state::{RunState, RunStatus, StepState, StepStatus};
