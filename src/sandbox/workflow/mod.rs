//! Workflow code: a component of the `sandstep:workflow/workflow` world
//! (`wit/workflow.wit`). It runs on its own engine, built for determinism:
//! NaN canonicalization, no epoch interruption (fuel bounds it, and it
//! yields to other tasks every [`YIELD_FUEL`] units), wall and monotonic
//! clocks that read the time of its latest recorded call, randomness seeded
//! from its run. It gets no files (no preopens), no environment, no network
//! (neither sockets nor `wasi:http` are linked), no stdin; its stdout and
//! stderr are captured (the tail of stderr names a panic).
//!
//! Every `ctx` call goes to a [`WorkflowHost`], which the run layer
//! implements: it answers from the run's journal while replaying and makes
//! the call for real once the journal ends. This module knows nothing of
//! journals: it runs the code and names how it ended.

use std::time::{Duration, Instant};

use wasmtime::component::HasData;
use wasmtime::{Engine, Store};

use super::outcome::{Failure, Level};
use super::state::{ComponentState, Tripwire};
use super::wasi::Stdio;
use super::{Module, Pre, Sandbox};
use crate::limits::{Limits, WorkflowLimits};

mod ctx;
mod engine;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/workflow.wit",
        world: "workflow",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::sandstep::workflow::types as wit;
pub(crate) use bindings::WorkflowPre;
use ctx::unexpected_answer;
use engine::workflow_state;
pub use engine::JournalClock;
pub(crate) use engine::{engines, imports_ctx, linker, Overflow};

/// Fuel between two yields of a running workflow to other tasks.
const YIELD_FUEL: u64 = 1_000_000;
/// Bytes of stdout and stderr kept from workflow code (the tail of stderr
/// goes into a trap's message).
const CAPTURE_BYTES: u64 = 64 << 10;

/// A call's failure as workflow code sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub kind: String,
    pub message: String,
}

/// A call's result: JSON text or a failure.
pub type CallResult = Result<String, CallFailure>;

/// One `ctx` call as the host receives it. `step`, `child`, `sleep` and
/// `wait-for-event` arrive as a submit followed by an await of it.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCall {
    Step {
        name: String,
        module: String,
        input: String,
        options: String,
    },
    Child {
        name: String,
        workflow: String,
        input: String,
        options: String,
    },
    StartChild {
        name: String,
        workflow: String,
        input: String,
    },
    Sleep {
        name: String,
        duration_ms: u64,
    },
    Wait {
        name: String,
        topic: String,
        timeout_ms: Option<u64>,
    },
    AwaitNext(Vec<u32>),
    AwaitAll(Vec<u32>),
    Now,
    Random,
    Patched(String),
}

/// The host's answer to a [`HostCall`].
#[derive(Debug, Clone, PartialEq)]
pub enum HostAnswer {
    /// A call started: its id.
    Submitted(u32),
    Next(u32, CallResult),
    All(Vec<CallResult>),
    /// `start-child`: the child's run id.
    Text(String),
    Number(u64),
    Bool(bool),
}

/// The host stops the code: the run fails with this (`kind: message`), or
/// the run is parked or canceled and the instance is no longer needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStop {
    pub kind: String,
    pub message: String,
}

/// What the code's `info()` returns.
#[derive(Debug, Clone, Default)]
pub struct WorkflowInfo {
    pub run_id: String,
    pub workflow: String,
    pub version: i64,
    pub created_ms: u64,
    pub started_ms: u64,
    pub trigger: Option<String>,
    pub token: Option<String>,
    pub parent_run_id: Option<String>,
}

/// The run layer's side of a workflow instance.
pub trait WorkflowHost: Send + 'static {
    fn call(
        &mut self,
        call: HostCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<HostAnswer, HostStop>> + Send + '_>>;
    /// A step-like call and the await of its result (`step`, `child`,
    /// `sleep`, `wait-for-event`): by default the two calls, one after the
    /// other; a host may answer both at once.
    fn submit_and_await(
        &mut self,
        call: HostCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<CallResult, HostStop>> + Send + '_>> {
        Box::pin(async move {
            let id = match self.call(call).await? {
                HostAnswer::Submitted(id) => id,
                other => return Err(unexpected_answer(other)),
            };
            match self.call(HostCall::AwaitAll(vec![id])).await? {
                HostAnswer::All(mut results) if results.len() == 1 => Ok(results.remove(0)),
                other => Err(unexpected_answer(other)),
            }
        })
    }
    fn log(&mut self, level: Level, message: String) -> Result<(), HostStop>;
    fn info(&self) -> WorkflowInfo;
}

/// How one instance of workflow code ended.
#[derive(Debug)]
pub struct WorkflowEnd {
    pub ended: Result<CallResult, WorkflowFault>,
    pub fuel_consumed: u64,
    pub peak_memory: u64,
    pub duration: Duration,
}

/// Workflow code that stopped without returning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowFault {
    /// The host stopped it (its reason).
    Stopped(HostStop),
    /// A limit or a trap: `fuel_exhausted`, `memory_limit`, `stack_overflow`,
    /// `workflow_trap`, ...
    Failed { kind: String, message: String },
}

/// Store data of a workflow instance, beside the WASI state.
pub(crate) struct WorkflowCtx {
    host: Box<dyn WorkflowHost>,
    clock: JournalClock,
    /// Set when the host stopped the code, so the trap is named by it.
    stopped: Option<HostStop>,
}

struct HasWorkflow;

impl HasData for HasWorkflow {
    type Data<'a> = &'a mut WorkflowCtx;
}

/// What a workflow instance is started with.
pub struct WorkflowStart<'a> {
    pub input: &'a str,
    pub limits: &'a WorkflowLimits,
    /// Fuel for this instance: the limit, or less under a budget.
    pub fuel: u64,
    /// Seeds the code's WASI randomness (derived from the run id).
    pub seed: u64,
    /// The clock the code reads, moved by the host as calls are answered.
    pub clock: JournalClock,
    /// The run's start (ms), origin of the monotonic clock.
    pub started_ms: u64,
}

impl Sandbox {
    /// Runs workflow code to its end (or until the host stops it). The
    /// future owns the instance: dropping it drops the instance.
    pub async fn run_workflow(
        &self,
        module: &Module,
        start: WorkflowStart<'_>,
        host: Box<dyn WorkflowHost>,
    ) -> WorkflowEnd {
        let began = Instant::now();
        let Pre::Workflow(pre) = &module.pre else {
            let kind = &module.info.kind;
            return not_started(
                format!("module {} is a {kind}, not a workflow", module.info.digest),
                began,
            );
        };
        let limits = Limits {
            fuel: start.fuel,
            memory: start.limits.memory,
            log_bytes: CAPTURE_BYTES,
            ..Limits::default()
        };
        let tripwire = Tripwire::default();
        let stdio = Stdio::step(&limits, &tripwire);
        let store_on = |engine: &Engine, host: Box<dyn WorkflowHost>| {
            let mut store = Store::new(engine, workflow_state(&start, &limits, &tripwire, &stdio, host));
            store.limiter(|s| &mut s.meter.limiter);
            store.set_fuel(start.fuel).expect("fuel metering is enabled");
            store
                .fuel_async_yield_interval(Some(YIELD_FUEL))
                .expect("fuel metering is enabled");
            store.set_hostcall_fuel(usize::try_from(limits.memory).unwrap_or(usize::MAX));
            store
        };
        // A pooled slot while one is free, else on demand; held until the
        // store is dropped.
        let slot = self
            .workflow_overflow
            .as_ref()
            .map(|o| o.slots.clone().try_acquire_owned());
        let mut store = match (&slot, &self.workflow_overflow) {
            (Some(Err(_)), Some(overflow)) => match self.overflow_pre(module, pre, overflow) {
                Ok(overflow_pre) => {
                    let mut store = store_on(&overflow.engine, host);
                    let called = call_workflow(&overflow_pre, &mut store, start.input).await;
                    return self.workflow_end(store, called, &start, &limits, &tripwire, &stdio, began);
                }
                Err(message) => return not_started(message, began),
            },
            _ => store_on(&self.workflow_engine, host),
        };
        let mut called = call_workflow(pre, &mut store, start.input).await;
        // The pool's memories, tables or core instances can run out before
        // its slots do (components with many): such an instance starts on
        // demand instead.
        if let (Err(super::run::Stop::Instantiate(_)), Some(overflow)) = (&called, &self.workflow_overflow) {
            if let Ok(overflow_pre) = self.overflow_pre(module, pre, overflow) {
                let host = store.into_data().workflow.take().expect("set above").host;
                drop(slot);
                store = store_on(&overflow.engine, host);
                called = call_workflow(&overflow_pre, &mut store, start.input).await;
            }
        }
        self.workflow_end(store, called, &start, &limits, &tripwire, &stdio, began)
    }

    /// How an instance ended, from its store.
    #[allow(clippy::too_many_arguments)]
    fn workflow_end(
        &self,
        mut store: Store<ComponentState>,
        called: Result<Result<String, wit::Failure>, super::run::Stop>,
        start: &WorkflowStart<'_>,
        limits: &Limits,
        tripwire: &Tripwire,
        stdio: &Stdio,
        began: Instant,
    ) -> WorkflowEnd {
        let stderr = stdio.stderr.contents();
        let stopped = store.data_mut().workflow.as_mut().and_then(|w| w.stopped.take());
        let ended = match (stopped, called) {
            (Some(stop), _) => Err(WorkflowFault::Stopped(stop)),
            (None, Ok(Ok(output))) => Ok(Ok(output)),
            (None, Ok(Err(failure))) => Ok(Err(CallFailure {
                kind: failure.kind,
                message: failure.message,
            })),
            (None, Err(stop)) => {
                let failure = self.conclude(tripwire, Ok(()), Err::<(), _>(stop), &stderr, limits, |()| {
                    Ok(serde_json::Value::Null)
                });
                let failure = failure.expect_err("a stop is a failure");
                let kind = match &failure {
                    Failure::Trap { .. } | Failure::InvalidOutput { .. } => "workflow_trap".to_string(),
                    other => other.kind().to_string(),
                };
                let message = match failure {
                    Failure::Trap { message } => message,
                    other => other.to_string(),
                };
                Err(WorkflowFault::Failed { kind, message })
            }
        };
        let fuel_left = store.get_fuel().unwrap_or(0);
        WorkflowEnd {
            ended,
            fuel_consumed: start.fuel.saturating_sub(fuel_left),
            peak_memory: store.data().meter.limiter.peak_memory,
            duration: began.elapsed(),
        }
    }

    /// The module's code ready for the on-demand engine: its compiled code
    /// moved over once, the first time an instance of it overflows the pool.
    fn overflow_pre(
        &self,
        module: &Module,
        pre: &WorkflowPre<ComponentState>,
        overflow: &Overflow,
    ) -> Result<WorkflowPre<ComponentState>, String> {
        module
            .overflow
            .get_or_init(|| {
                let bytes = pre
                    .instance_pre()
                    .component()
                    .serialize()
                    .map_err(|e| format!("{e:#}"))?;
                // SAFETY: this program's own artifact, compiled a moment ago
                // by the pooled workflow engine, whose settings the
                // on-demand one shares.
                let component = unsafe { wasmtime::component::Component::deserialize(&overflow.engine, &bytes) }
                    .map_err(|e| format!("{e:#}"))?;
                let instance_pre = overflow
                    .linker
                    .instantiate_pre(&component)
                    .map_err(|e| format!("{e:#}"))?;
                WorkflowPre::new(instance_pre).map_err(|e| format!("{e:#}"))
            })
            .clone()
    }
}

/// Instantiates the code and calls its `run`.
async fn call_workflow(
    pre: &WorkflowPre<ComponentState>,
    store: &mut Store<ComponentState>,
    input: &str,
) -> Result<Result<String, wit::Failure>, super::run::Stop> {
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(super::run::Stop::Instantiate)?;
    instance
        .call_run(&mut *store, input)
        .await
        .map_err(super::run::Stop::Call)
}

/// An instance that could not be started at all.
fn not_started(message: String, began: Instant) -> WorkflowEnd {
    WorkflowEnd {
        ended: Err(WorkflowFault::Failed {
            kind: "module_error".into(),
            message,
        }),
        fuel_consumed: 0,
        peak_memory: 0,
        duration: began.elapsed(),
    }
}
