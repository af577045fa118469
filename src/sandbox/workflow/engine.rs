//! The engines workflow code runs on, built for determinism (NaN
//! canonicalization, fuel, no epoch interruption), their linker, and a
//! store's deterministic WASI subset: clocks that read the journal's time
//! and randomness seeded from the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use wasmtime::{Config, Engine};

use super::{bindings, HasWorkflow, WorkflowCtx, WorkflowHost, WorkflowStart};
use crate::limits::{EngineSettings, Limits};
use crate::sandbox::state::{ComponentState, Meter, Tripwire};
use crate::sandbox::wasi::Stdio;

fn config(settings: &EngineSettings) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .max_wasm_stack(settings.max_wasm_stack)
        .async_stack_size(settings.max_wasm_stack + (1 << 20));
    config
}

/// The engines for workflow code: one whose instances take the pooling
/// allocator's slots (`max_pooled_workflows` of them), and one allocating
/// on demand for the instances past them, which runs the same compiled
/// code. Without the pool (none asked for, or the host refused its
/// reservation), the one engine allocates on demand.
pub(crate) fn engines(settings: &EngineSettings) -> wasmtime::Result<(Engine, Option<Engine>)> {
    let on_demand = Engine::new(&config(settings))?;
    if settings.max_pooled_workflows == 0 {
        return Ok((on_demand, None));
    }
    let mut pooled = config(settings);
    let pool = crate::sandbox::engine::pool(settings, settings.max_pooled_workflows);
    pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok((engine, Some(on_demand))),
        Err(err) => {
            tracing::warn!(error = %err, "workflow instance pool unavailable, allocating on demand");
            Ok((on_demand, None))
        }
    }
}

/// Links the workflow world and the deterministic WASI subset.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<wasmtime::component::Linker<ComponentState>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    crate::sandbox::wasi::add_to_linker(&mut linker)?;
    bindings::Workflow::add_to_linker::<_, HasWorkflow>(&mut linker, |state| {
        state
            .workflow
            .as_deref_mut()
            .expect("workflow stores always carry their host")
    })?;
    Ok(linker)
}

/// Whether a component that imports `imports` is workflow code.
pub(crate) fn imports_ctx(imports: &[String]) -> bool {
    imports.iter().any(|i| i.starts_with("sandstep:workflow/ctx@"))
}

/// What the code's clocks read: the time (ms) of its latest recorded call.
#[derive(Clone, Default)]
pub struct JournalClock(Arc<AtomicU64>);

impl JournalClock {
    pub fn new(ms: u64) -> Self {
        JournalClock(Arc::new(AtomicU64::new(ms)))
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    fn ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct WallClock(JournalClock);

impl wasmtime_wasi::HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.ms())
    }
}

/// Nanoseconds since the run started, by the same journal time.
struct MonotonicClock {
    clock: JournalClock,
    origin_ms: u64,
}

impl wasmtime_wasi::HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.clock.ms().saturating_sub(self.origin_ms) * 1_000_000
    }
}

/// The on-demand engine for workflow instances past the pool's slots.
pub(crate) struct Overflow {
    pub(crate) engine: Engine,
    pub(crate) linker: wasmtime::component::Linker<ComponentState>,
    /// The pool's slots: a permit per pooled instance.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
}

impl Overflow {
    pub(crate) fn new(engine: Engine, slots: u32) -> wasmtime::Result<Self> {
        Ok(Overflow {
            linker: linker(&engine)?,
            engine,
            slots: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
        })
    }
}

/// A workflow instance's store data: the deterministic WASI subset (the
/// journal's clocks, seeded randomness, captured output) and its host.
pub(super) fn workflow_state(
    start: &WorkflowStart<'_>,
    limits: &Limits,
    tripwire: &Tripwire,
    stdio: &Stdio,
    host: Box<dyn WorkflowHost>,
) -> ComponentState {
    let mut builder = crate::sandbox::wasi::context(None, &[], &[], stdio);
    builder
        .wall_clock(WallClock(start.clock.clone()))
        .monotonic_clock(MonotonicClock {
            clock: start.clock.clone(),
            origin_ms: start.started_ms,
        })
        .secure_random(rand::rngs::StdRng::seed_from_u64(start.seed))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(start.seed ^ 0x5eed))
        .insecure_random_seed(u128::from(start.seed));
    let mut state = ComponentState::new(
        builder.build(),
        Meter::new(limits, tripwire),
        None,
        crate::sandbox::files::Files::default(),
    );
    state.workflow = Some(Box::new(WorkflowCtx {
        host,
        clock: start.clock.clone(),
        stopped: None,
    }));
    state
}
