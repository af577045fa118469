//! Running workflows: events ([`event`]), the step result cache ([`cache`]), the run state they fold into
//! ([`state`]), the journal every change passes through ([`journal`]),
//! secrets and their redaction ([`secrets`]), requests that reach a run
//! from outside ([`inbox`]), keyed limits on attempts ([`throttle`]), child runs of sub-workflow steps
//! ([`children`]) and the executor that drives a run ([`executor`]). Nothing here knows the store or any transport: a
//! durable journal is provided by [`crate::service`].

pub mod cache;
pub mod chain;
pub mod children;
pub mod code;
pub mod event;
pub mod executor;
pub mod inbox;
pub mod journal;
pub mod secrets;
pub mod state;
pub mod status;
pub mod throttle;

pub use event::{AttemptRecord, ErrorKind, Event, EventKind, StepError};
pub use executor::{Executor, RunSpec};
pub use journal::{Journal, JournalError, MemoryJournal};
pub use secrets::Secrets;
pub use state::{RunState, RunStatus, StepState, StepStatus};
