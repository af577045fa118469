//! Running one attempt: a fresh store with the attempt's limits, the call,
//! and the classification of how it ended into an [`Attempt`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::files::Files;
use super::http::HttpGate;
use super::outcome::{Attempt, AttemptResult, Failure, Level};
use super::state::{ComponentState, CoreState, Meter, Metered, Tripwire};
use super::wasi::{self, Stdio};
use super::{bindings, Module, Pre, Sandbox};
use crate::grants::HostPattern;
use crate::limits::Limits;

/// Who is running: passed to a step component as its `context`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepContext {
    pub run_id: String,
    pub step_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The same for every attempt of one step (one item) of one run.
    pub idempotency_key: String,
    /// The W3C `traceparent` naming this attempt's span, set on every
    /// outgoing HTTP request (when the server exports traces).
    pub traceparent: Option<String>,
}

/// One attempt to run.
#[derive(Debug, Clone, Copy)]
pub struct AttemptRequest<'a> {
    /// The input JSON text.
    pub input: &'a str,
    /// A command's arguments (argv[1..]); ignored for step components.
    pub args: &'a [String],
    pub context: &'a StepContext,
    pub limits: &'a Limits,
    /// What the attempt may reach; [`NO_ACCESS`] for nothing.
    pub access: &'a Access,
}

/// What one attempt is granted, resolved: hosts, directories (opened by
/// the server, by name), a scratch size, environment variables.
#[derive(Debug, Default)]
pub struct Access {
    pub http: Vec<HostPattern>,
    pub read: Vec<(String, Arc<cap_std::fs::Dir>)>,
    pub scratch: Option<u64>,
    pub env: Vec<(String, String)>,
}

/// Nothing granted.
pub static NO_ACCESS: Access = Access {
    http: Vec::new(),
    read: Vec::new(),
    scratch: None,
    env: Vec::new(),
};

impl Access {
    fn has_files(&self) -> bool {
        self.scratch.is_some() || !self.read.is_empty()
    }
}

/// How the guest code stopped before producing a result.
pub(super) enum Stop {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
    TimedOut,
}

/// A command's exit: a status code, or a stop before exiting.
type Exit = Result<i32, Stop>;

/// The name commands see as argv[0].
const PROGRAM_NAME: &str = "step";

impl Sandbox {
    /// Runs one attempt in a fresh store. Never panics on guest behaviour:
    /// every way an attempt can end is an [`Attempt`].
    pub async fn run(&self, module: &Module, request: AttemptRequest<'_>) -> Attempt {
        let span = tracing::debug_span!(
            "attempt",
            module = %module.info.digest,
            step = %request.context.step_id,
            attempt = request.context.attempt
        );
        let attempt = async {
            if let Some(denied) = denied(module, request.access) {
                return Attempt::refused(denied);
            }
            match &module.pre {
                Pre::Step(pre) => self.run_step(pre, request).await,
                Pre::CommandComponent(pre) => self.run_command_component(pre, request).await,
                Pre::CommandCore(pre) => self.run_command_core(pre, request).await,
                Pre::Workflow(_) => Attempt::refused(Failure::InstantiationFailed {
                    message: "this module is workflow code, not a step: run it as a workflow's `code:`".into(),
                }),
            }
        };
        tracing::Instrument::instrument(attempt, span).await
    }

    /// A store for one attempt: fuel, limiter, hostcall bound and a deadline
    /// checked at every epoch tick (yielding to other tasks in between).
    ///
    /// The hostcall bound is the memory limit: one string or byte list lies
    /// in the guest's memory, so a large log line, write or result never
    /// reaches it and is named by its own limit; only lists aliasing memory
    /// to be copied many times over do (`host_call_too_large`).
    pub(crate) fn new_store<T: Metered>(&self, data: T, limits: &Limits, deadline: Instant) -> Store<T> {
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| &mut s.meter().limiter);
        store
            .set_fuel(limits.fuel)
            .expect("fuel metering is enabled on the engine");
        store.set_hostcall_fuel(usize::try_from(limits.memory).unwrap_or(usize::MAX));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    async fn run_step(&self, pre: &bindings::StepPre<ComponentState>, request: AttemptRequest<'_>) -> Attempt {
        let limits = request.limits;
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let tripwire = Tripwire::default();
        let stdio = Stdio::step(limits, &tripwire);
        let data = match component_state(None, &[], &stdio, &request, &tripwire, deadline) {
            Ok(data) => data,
            Err(failure) => return Attempt::refused(failure),
        };
        let mut store = self.new_store(data, limits, deadline);
        let mut instantiated = Duration::ZERO;
        let ctx = bindings::Context {
            run_id: request.context.run_id.clone(),
            step_id: request.context.step_id.clone(),
            attempt: request.context.attempt,
            idempotency_key: request.context.idempotency_key.clone(),
        };
        let called = tokio::time::timeout_at(deadline.into(), async {
            let step = pre.instantiate_async(&mut store).await.map_err(Stop::Instantiate)?;
            instantiated = started.elapsed();
            step.call_run(&mut store, &ctx, request.input).await.map_err(Stop::Call)
        })
        .await
        .unwrap_or(Err(Stop::TimedOut));

        let stdout = stdio.stdout.contents();
        let stderr = stdio.stderr.contents();
        let logs = &mut store.data_mut().meter().logs;
        let captured = logs
            .push_text(Level::Info, &stdout)
            .and_then(|()| logs.push_text(Level::Warn, &stderr));
        let result = self.conclude(
            &tripwire,
            captured,
            called,
            &stderr,
            limits,
            |returned| match returned {
                Ok(output) => parse_output(output.into_bytes(), limits),
                Err(error) if error.message.len() as u64 > limits.output_bytes => Err(Failure::OutputTooLarge {
                    limit: limits.output_bytes,
                }),
                Err(error) => Err(Failure::GuestError {
                    message: error.message,
                    retryable: error.retryable,
                }),
            },
        );
        finish(store, started, instantiated, limits, result)
    }

    async fn run_command_component(
        &self,
        pre: &wasmtime_wasi::p2::bindings::CommandPre<ComponentState>,
        request: AttemptRequest<'_>,
    ) -> Attempt {
        let limits = request.limits;
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let tripwire = Tripwire::default();
        let stdio = Stdio::command(limits, &tripwire);
        let stdin = Some(request.input.as_bytes());
        let data = match component_state(stdin, &argv(request.args), &stdio, &request, &tripwire, deadline) {
            Ok(data) => data,
            Err(failure) => return Attempt::refused(failure),
        };
        let mut store = self.new_store(data, limits, deadline);
        let mut instantiated = Duration::ZERO;
        let exit: Exit = tokio::time::timeout_at(deadline.into(), async {
            let command = pre.instantiate_async(&mut store).await.map_err(Stop::Instantiate)?;
            instantiated = started.elapsed();
            match command.wasi_cli_run().call_run(&mut store).await {
                Ok(Ok(())) => Ok(0),
                Ok(Err(())) => Ok(1),
                Err(error) => exit_code(&error).ok_or(Stop::Call(error)),
            }
        })
        .await
        .unwrap_or(Err(Stop::TimedOut));
        self.finish_command(store, &stdio, &tripwire, started, instantiated, limits, exit)
    }

    async fn run_command_core(&self, pre: &wasmtime::InstancePre<CoreState>, request: AttemptRequest<'_>) -> Attempt {
        let limits = request.limits;
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let tripwire = Tripwire::default();
        let stdio = Stdio::command(limits, &tripwire);
        let data = CoreState {
            wasi: wasi::context(
                Some(request.input.as_bytes()),
                &argv(request.args),
                &request.access.env,
                &stdio,
            )
            .build_p1(),
            meter: Meter::new(limits, &tripwire),
        };
        let mut store = self.new_store(data, limits, deadline);
        let mut instantiated = Duration::ZERO;
        let exit: Exit = tokio::time::timeout_at(deadline.into(), async {
            let instance = pre.instantiate_async(&mut store).await.map_err(Stop::Instantiate)?;
            instantiated = started.elapsed();
            let start = instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .map_err(Stop::Instantiate)?;
            match start.call_async(&mut store, ()).await {
                Ok(()) => Ok(0),
                Err(error) => exit_code(&error).ok_or(Stop::Call(error)),
            }
        })
        .await
        .unwrap_or(Err(Stop::TimedOut));
        self.finish_command(store, &stdio, &tripwire, started, instantiated, limits, exit)
    }

    /// A command's outcome: stdout is the output, stderr lines are logs, exit
    /// code 0 is success.
    #[allow(clippy::too_many_arguments)]
    fn finish_command<T: Metered>(
        &self,
        mut store: Store<T>,
        stdio: &Stdio,
        tripwire: &Tripwire,
        started: Instant,
        instantiated: Duration,
        limits: &Limits,
        exit: Exit,
    ) -> Attempt {
        let stdout = stdio.stdout.contents();
        let stderr = stdio.stderr.contents();
        let captured = store.data_mut().meter().logs.push_text(Level::Info, &stderr);
        let result = self.conclude(tripwire, captured, exit, &stderr, limits, |code| match code {
            0 => parse_output(stdout.to_vec(), limits),
            code => Err(command_error(code, &stdout, &stderr)),
        });
        finish(store, started, instantiated, limits, result)
    }

    /// How an attempt ended, naming the limit the guest crossed first: one
    /// recorded where it was crossed (memory, a log call, a captured stream);
    /// else one that stopped the guest on the spot (fuel, time, stack, an
    /// oversized host call); else the captured stream lines over the log
    /// limits; else what the guest returned or why it trapped.
    pub(super) fn conclude<R>(
        &self,
        tripwire: &Tripwire,
        captured: Result<(), String>,
        ended: Result<R, Stop>,
        stderr: &[u8],
        limits: &Limits,
        returned: impl FnOnce(R) -> Result<serde_json::Value, Failure>,
    ) -> Result<serde_json::Value, Failure> {
        if let Some(failure) = tripwire.tripped() {
            return Err(failure);
        }
        match ended.map_err(|stop| classify(stop, stderr, limits, self.settings.max_wasm_stack)) {
            Err(failure) if failure.names_a_limit() => Err(failure),
            ended => {
                captured.map_err(|message| Failure::LogsTooLarge { message })?;
                ended.and_then(returned)
            }
        }
    }
}

/// The store data of a component attempt: its WASI context (with the
/// granted environment), HTTP gate and file grants.
fn component_state(
    stdin: Option<&[u8]>,
    args: &[String],
    stdio: &Stdio,
    request: &AttemptRequest<'_>,
    tripwire: &Tripwire,
    deadline: Instant,
) -> Result<ComponentState, Failure> {
    let access = request.access;
    let limits = request.limits;
    let http = (!access.http.is_empty()).then(|| {
        Box::new(
            HttpGate::new(access.http.clone(), deadline, limits.http_requests, limits.http_bytes)
                .with_traceparent(request.context.traceparent.as_deref()),
        )
    });
    let files = if access.has_files() {
        Files::new(&access.read, access.scratch, tripwire).map_err(|e| Failure::InstantiationFailed {
            message: format!("cannot prepare the granted directories: {e}"),
        })?
    } else {
        Files::default()
    };
    Ok(ComponentState::new(
        wasi::context(stdin, args, &access.env, stdio).build(),
        Meter::new(limits, tripwire),
        http,
        files,
    ))
}

/// Why `module` cannot run with `access`, if it cannot: it imports
/// `wasi:http` with no host granted, or it is a preview-1 module (whose
/// file use cannot be audited or capped) given directories.
fn denied(module: &Module, access: &Access) -> Option<Failure> {
    if access.http.is_empty() {
        if let Some(import) = module.info.imports.iter().find(|i| i.starts_with("wasi:http/")) {
            return Some(Failure::CapabilityDenied {
                message: format!(
                    "the module imports {import} but the step is granted no hosts: add them under `grants.http`"
                ),
            });
        }
    }
    if access.has_files() && matches!(module.pre, Pre::CommandCore(_)) {
        return Some(Failure::CapabilityDenied {
            message:
                "file grants need a component (build for wasm32-wasip2): a preview-1 module cannot be given directories"
                    .into(),
        });
    }
    None
}

fn argv(args: &[String]) -> Vec<String> {
    std::iter::once(PROGRAM_NAME.to_string())
        .chain(args.iter().cloned())
        .collect()
}

fn exit_code(error: &wasmtime::Error) -> Option<i32> {
    error.downcast_ref::<wasmtime_wasi::I32Exit>().map(|exit| exit.0)
}

/// A command that exits non-zero may say what went wrong on stdout, as
/// `{"error": {"message": "...", "retryable": false}}` (`retryable` defaults
/// to true). Otherwise the message is the exit code and the last stderr
/// lines, and the failure is retryable.
fn command_error(code: i32, stdout: &[u8], stderr: &[u8]) -> Failure {
    #[derive(serde::Deserialize)]
    struct Reported {
        error: ReportedError,
    }
    #[derive(serde::Deserialize)]
    struct ReportedError {
        message: String,
        #[serde(default = "retryable_by_default")]
        retryable: bool,
    }
    fn retryable_by_default() -> bool {
        true
    }
    match serde_json::from_slice::<Reported>(stdout.trim_ascii()) {
        Ok(Reported { error }) => Failure::GuestError {
            message: error.message,
            retryable: error.retryable,
        },
        Err(_) => Failure::GuestError {
            message: with_stderr(format!("exited with code {code}"), stderr),
            retryable: true,
        },
    }
}

/// The output JSON, checked for size, UTF-8 and syntax.
fn parse_output(bytes: Vec<u8>, limits: &Limits) -> Result<serde_json::Value, Failure> {
    if bytes.len() as u64 > limits.output_bytes {
        return Err(Failure::OutputTooLarge {
            limit: limits.output_bytes,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| Failure::InvalidOutput {
        message: format!("output is not UTF-8: {}", e.utf8_error()),
    })?;
    serde_json::from_str(&text).map_err(|e| Failure::InvalidOutput {
        message: format!("output is not JSON: {e}"),
    })
}

/// wasmtime's words when one host call's data outgrew the hostcall fuel (its
/// error type is private); `tests/limits.rs` checks they still match.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Names the way guest code stopped.
fn classify(stop: Stop, stderr: &[u8], limits: &Limits, stack_limit: usize) -> Failure {
    let (error, instantiating) = match stop {
        Stop::TimedOut => return Failure::Timeout { limit: limits.timeout },
        Stop::Instantiate(error) => (error, true),
        Stop::Call(error) => (error, false),
    };
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Failure::FuelExhausted { limit: limits.fuel },
            Trap::StackOverflow => Failure::StackOverflow {
                limit: stack_limit as u64,
            },
            Trap::Interrupt => Failure::Timeout { limit: limits.timeout },
            other => Failure::Trap {
                message: with_stderr(other.to_string(), stderr),
            },
        };
    }
    if error
        .chain()
        .any(|cause| cause.to_string().contains(HOSTCALL_FUEL_EXHAUSTED))
    {
        return Failure::HostCallTooLarge { limit: limits.memory };
    }
    if error.chain().any(|cause| cause.is::<std::str::Utf8Error>()) {
        return Failure::InvalidOutput {
            message: "the guest passed a string that is not UTF-8".into(),
        };
    }
    let message = error.root_cause().to_string();
    if instantiating {
        Failure::InstantiationFailed { message }
    } else {
        Failure::Trap {
            message: with_stderr(message, stderr),
        }
    }
}

/// Appends the last lines the guest wrote to stderr (a panic message, say).
fn with_stderr(message: String, stderr: &[u8]) -> String {
    const TAIL_LINES: usize = 5;
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return message;
    }
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    format!("{message}; stderr: {}", tail.join("\n"))
}

fn finish<T: Metered>(
    mut store: Store<T>,
    started: Instant,
    instantiated: Duration,
    limits: &Limits,
    result: Result<serde_json::Value, Failure>,
) -> Attempt {
    let duration: Duration = started.elapsed();
    let fuel_left = store.get_fuel().unwrap_or(0);
    let audit = store.data_mut().audit();
    let meter = store.data_mut().meter();
    let attempt = Attempt {
        result: match result {
            Ok(output) => AttemptResult::Succeeded { output },
            Err(error) => AttemptResult::Failed { error },
        },
        duration,
        instantiate: instantiated,
        fuel_consumed: limits.fuel.saturating_sub(fuel_left),
        peak_memory: meter.limiter.peak_memory,
        logs: std::mem::take(&mut meter.logs.lines),
        audit,
    };
    if let Some(failure) = attempt.failure() {
        tracing::debug!(error.kind = failure.kind(), error = %failure, "attempt failed");
    }
    attempt
}
