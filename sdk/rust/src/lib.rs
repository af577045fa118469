//! Sandstep workflows as code, in Rust.
//!
//! A workflow is a function from its input to its output that reaches the
//! world only through [`Ctx`]: steps, sub-workflows, sleeps, waits for
//! events, the time and random numbers. Every call is recorded in the
//! run's journal; after a crash or a pause the function runs again and
//! each recorded call is answered from the journal, so it must make the
//! same calls in the same order given the same answers (use [`Ctx::now`]
//! and [`Ctx::random`], never a clock or a random source of your own).
//!
//! ```ignore
//! use sandstep_workflow::{workflow, Ctx, Failure, Options};
//!
//! fn run(ctx: &Ctx, order: Order) -> Result<Receipt, Failure> {
//!     let charged: Charge = ctx.step("charge", "payments:v1", &order, Options::new())?;
//!     Ok(Receipt { id: charged.id })
//! }
//! workflow!(run);
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/workflow.wit",
        world: "workflow",
        pub_export_macro: true,
        export_macro_name: "export_workflow",
    });
}

use bindings::sandstep::workflow::{ctx, types};

pub use serde_json;

/// Why a call (or the workflow) failed: `kind` is the run resource's
/// failure kind (`guest_error`, `wait_timeout`, `child_failed`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The workflow's own error: the run fails with `workflow_error`.
    pub fn error(message: impl Into<String>) -> Self {
        Failure::new("workflow_error", message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Failure {}

impl From<types::Failure> for Failure {
    fn from(f: types::Failure) -> Self {
        Failure::new(f.kind, f.message)
    }
}

fn invalid(what: &str, error: serde_json::Error) -> Failure {
    Failure::new("invalid_output", format!("{what}: {error}"))
}

/// A step's options: the YAML step fields that apply to calls.
#[derive(Debug, Clone, Default)]
pub struct Options(Map<String, Value>);

impl Options {
    pub fn new() -> Self {
        Options::default()
    }

    /// Any option by name, as JSON (`retry`, `limits`, `cache`, ...).
    pub fn set(mut self, name: &str, value: Value) -> Self {
        self.0.insert(name.to_string(), value);
        self
    }

    /// Up to `max_attempts` attempts in all.
    pub fn retry(self, max_attempts: u32) -> Self {
        self.set("retry", serde_json::json!({ "max_attempts": max_attempts }))
    }

    /// The step's wall-clock limit (`"10s"`, `"2m"`).
    pub fn timeout(self, timeout: &str) -> Self {
        self.set("timeout", Value::String(timeout.into()))
    }

    pub fn cache(self) -> Self {
        self.set("cache", Value::Bool(true))
    }

    /// The key every attempt of the step gets (default: run id and call name).
    pub fn idempotency_key(self, key: &str) -> Self {
        self.set("idempotency_key", Value::String(key.into()))
    }

    /// An environment variable; `{{ secrets.NAME }}` is rendered by the host.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        let env = self.0.entry("env").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(env) = env {
            env.insert(name.into(), Value::String(value.into()));
        }
        self
    }

    fn text(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}

/// A call started without waiting ([`Ctx::submit_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Call(pub u32);

/// A posted event that ended a wait.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    pub id: String,
    pub topic: String,
    pub data: T,
}

/// The run this code is running.
pub type RunInfo = types::RunInfo;

/// Log levels.
pub use types::Level;

/// What workflow code does to the world.
pub struct Ctx {
    _private: (),
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("a workflow's values serialize to JSON")
}

fn parse<O: DeserializeOwned>(what: &str, text: &str) -> Result<O, Failure> {
    serde_json::from_str(text).map_err(|e| invalid(what, e))
}

impl Ctx {
    pub fn info(&self) -> RunInfo {
        ctx::info()
    }

    /// Runs a module step and waits for it.
    pub fn step<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        name: &str,
        module: &str,
        input: &I,
        options: Options,
    ) -> Result<O, Failure> {
        let output = ctx::step(name, module, &to_json(input), &options.text())?;
        parse(name, &output)
    }

    /// Starts a module step without waiting: [`Ctx::join`] or [`Ctx::next`] it.
    pub fn submit_step<I: Serialize + ?Sized>(&self, name: &str, module: &str, input: &I, options: Options) -> Call {
        Call(ctx::submit_step(name, module, &to_json(input), &options.text()))
    }

    /// Runs a sub-workflow (YAML or code) and waits for its run.
    pub fn child<I: Serialize + ?Sized, O: DeserializeOwned>(&self, name: &str, workflow: &str, input: &I) -> Result<O, Failure> {
        let output = ctx::child(name, workflow, &to_json(input), "{}")?;
        parse(name, &output)
    }

    /// Starts a sub-workflow's run without waiting for it.
    pub fn submit_child<I: Serialize + ?Sized>(&self, name: &str, workflow: &str, input: &I) -> Call {
        Call(ctx::submit_child(name, workflow, &to_json(input), "{}"))
    }

    /// Starts a run of another workflow and returns its run id at once.
    pub fn start_child<I: Serialize + ?Sized>(&self, name: &str, workflow: &str, input: &I) -> String {
        ctx::start_child(name, workflow, &to_json(input))
    }

    /// Waits for every call, results in the given order.
    pub fn join<O: DeserializeOwned>(&self, calls: &[Call]) -> Vec<Result<O, Failure>> {
        let ids: Vec<u32> = calls.iter().map(|c| c.0).collect();
        ctx::await_all(&ids)
            .into_iter()
            .zip(calls)
            .map(|(result, call)| match result {
                Ok(text) => parse(&format!("call {}", call.0), &text),
                Err(failure) => Err(failure.into()),
            })
            .collect()
    }

    /// Waits for whichever of `calls` ends first.
    pub fn next<O: DeserializeOwned>(&self, calls: &[Call]) -> (Call, Result<O, Failure>) {
        let ids: Vec<u32> = calls.iter().map(|c| c.0).collect();
        let (id, result) = ctx::await_next(&ids);
        let result = match result {
            Ok(text) => parse(&format!("call {id}"), &text),
            Err(failure) => Err(failure.into()),
        };
        (Call(id), result)
    }

    /// A durable sleep.
    pub fn sleep(&self, name: &str, duration: Duration) {
        ctx::sleep(name, duration.as_millis() as u64)
    }

    /// Waits for an event of `topic` (fails with `wait_timeout` after `timeout`).
    pub fn wait_for_event<T: DeserializeOwned>(
        &self,
        name: &str,
        topic: &str,
        timeout: Option<Duration>,
    ) -> Result<Event<T>, Failure> {
        let event = ctx::wait_for_event(name, topic, timeout.map(|t| t.as_millis() as u64))?;
        Ok(Event {
            data: parse(name, &event.data)?,
            id: event.id,
            topic: event.topic,
        })
    }

    /// Milliseconds since the Unix epoch (recorded: the same on replay).
    pub fn now(&self) -> u64 {
        ctx::now()
    }

    /// A random number (recorded: the same on replay).
    pub fn random(&self) -> u64 {
        ctx::random()
    }

    pub fn log(&self, level: Level, message: &str) {
        ctx::log(level, message)
    }

    pub fn info_log(&self, message: &str) {
        ctx::log(Level::Info, message)
    }

    /// True where the code takes the path added by change `id`; false when
    /// replaying a run recorded before it.
    pub fn patched(&self, id: &str) -> bool {
        ctx::patched(id)
    }
}

#[doc(hidden)]
pub fn __run<I: DeserializeOwned, O: Serialize>(
    input: &str,
    run: fn(&Ctx, I) -> Result<O, Failure>,
) -> Result<String, types::Failure> {
    let failure = |f: Failure| types::Failure {
        kind: f.kind,
        message: f.message,
    };
    let input: I = serde_json::from_str(input)
        .map_err(|e| failure(Failure::error(format!("the input does not fit the workflow: {e}"))))?;
    let output = run(&Ctx { _private: () }, input).map_err(failure)?;
    Ok(to_json(&output))
}

/// Exports `run: fn(&Ctx, I) -> Result<O, Failure>` as the workflow.
#[macro_export]
macro_rules! workflow {
    ($run:path) => {
        struct SandstepWorkflow;
        impl $crate::bindings::Guest for SandstepWorkflow {
            fn run(input: String) -> Result<String, $crate::bindings::sandstep::workflow::types::Failure> {
                $crate::__run(&input, $run)
            }
        }
        $crate::bindings::export_workflow!(SandstepWorkflow with_types_in $crate::bindings);
    };
}
