//! The sandbox: every use of wasmtime lives under this module. The rest of
//! the code asks "load these bytes" ([`Sandbox::load`]) and "run this module
//! with this input under these limits" ([`Sandbox::run`]) and gets a typed
//! [`Attempt`] back.
//!
//! Lifetimes: the [`Sandbox`] (engine, linkers, epoch ticker, compile cache)
//! lives as long as the process; a [`Module`] (compiled code and its
//! pre-instantiated form) as long as it is in use; each attempt gets a fresh
//! `Store` that is dropped when the attempt ends, so attempts share nothing.

mod bindings;
mod cache;
mod engine;
mod epoch;
mod files;
mod http;
mod load;
mod outcome;
mod run;
mod state;
pub mod wasi;
mod workflow;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::Engine;

pub use load::ModuleError;
pub use outcome::{Attempt, AttemptResult, Audit, Failure, FileUse, HttpUse, Level, LogLine};
pub use run::{Access, AttemptRequest, StepContext, NO_ACCESS};
pub use workflow::{
    CallFailure, CallResult, HostAnswer, HostCall, HostStop, JournalClock, WorkflowEnd, WorkflowFault, WorkflowHost,
    WorkflowInfo, WorkflowStart,
};

use crate::limits::EngineSettings;
use state::{ComponentState, CoreState};

/// What a module is, decided when it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// A component of the `sandstep:step/step` world.
    Step,
    /// A WASI command: a preview-1 core module exporting `_start`, or a
    /// component exporting `wasi:cli/run`.
    Command,
    /// Workflow code: a component of the `sandstep:workflow/workflow` world.
    Workflow,
}

impl std::fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModuleKind::Step => "step",
            ModuleKind::Command => "command",
            ModuleKind::Workflow => "workflow",
        })
    }
}

/// What loading learnt about a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// `sha256:<hex>` of the binary.
    pub digest: String,
    pub kind: ModuleKind,
    /// Size of the binary in bytes.
    pub size: u64,
    /// Imported interfaces (components) or `module::name` (core modules).
    pub imports: Vec<String>,
    /// Exported names.
    pub exports: Vec<String>,
}

/// A loaded module: compiled, checked against the host, pre-instantiated.
pub struct Module {
    pub info: ModuleInfo,
    /// Time spent compiling, or loading the cached artifact.
    pub load_time: Duration,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    pre: Pre,
    /// Workflow code ready for the on-demand engine, made the first time
    /// an instance of it overflows the pool.
    overflow: std::sync::OnceLock<Result<workflow::WorkflowPre<ComponentState>, String>>,
}

enum Pre {
    Step(bindings::StepPre<ComponentState>),
    CommandComponent(wasmtime_wasi::p2::bindings::CommandPre<ComponentState>),
    CommandCore(wasmtime::InstancePre<CoreState>),
    Workflow(workflow::WorkflowPre<ComponentState>),
}

/// Failure to start the sandbox itself.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot use the compile cache at {path}: {source}")]
    Cache { path: String, source: std::io::Error },
}

/// The process-wide sandbox.
pub struct Sandbox {
    engine: Engine,
    component_linker: wasmtime::component::Linker<ComponentState>,
    core_linker: wasmtime::Linker<CoreState>,
    cache: Option<cache::ArtifactCache>,
    /// Workflow code runs on an engine of its own (deterministic floats,
    /// no epochs), with its own linker and compiled code.
    workflow_engine: Engine,
    workflow_linker: wasmtime::component::Linker<ComponentState>,
    workflow_cache: Option<cache::ArtifactCache>,
    /// Where workflow instances past the pool's slots start (none when the
    /// workflow engine allocates on demand itself).
    workflow_overflow: Option<workflow::Overflow>,
    settings: EngineSettings,
    _ticker: epoch::EpochTicker,
}

/// `sha256:<hex>` of some bytes: the identity of a module.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Sandbox {
    /// Builds the engine and linkers. With `cache_dir`, compiled code is kept
    /// there across processes; without, every load compiles.
    pub fn new(settings: EngineSettings, cache_dir: Option<&Path>) -> Result<Self, SandboxError> {
        let engine_err = |e: wasmtime::Error| SandboxError::Engine(format!("{e:#}"));
        let engine = engine::build(&settings).map_err(engine_err)?;

        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasi::add_to_linker(&mut component_linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker).map_err(engine_err)?;
        bindings::Step::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut component_linker, |s| s)
            .map_err(engine_err)?;

        let mut core_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |s: &mut CoreState| &mut s.wasi)
            .map_err(engine_err)?;

        let (workflow_engine, on_demand) = workflow::engines(&settings).map_err(engine_err)?;
        let workflow_linker = workflow::linker(&workflow_engine).map_err(engine_err)?;
        let workflow_overflow = on_demand
            .map(|engine| workflow::Overflow::new(engine, settings.max_pooled_workflows))
            .transpose()
            .map_err(engine_err)?;
        let cache_for = |engine: &Engine| match cache_dir {
            Some(dir) => cache::ArtifactCache::new(dir, engine)
                .map(Some)
                .map_err(|source| SandboxError::Cache {
                    path: dir.display().to_string(),
                    source,
                }),
            None => Ok(None),
        };
        let cache = cache_for(&engine)?;
        let workflow_cache = cache_for(&workflow_engine)?;
        let ticker = epoch::EpochTicker::start(engine.clone(), settings.epoch_tick)
            .map_err(|e| SandboxError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Sandbox {
            engine,
            component_linker,
            core_linker,
            cache,
            workflow_engine,
            workflow_linker,
            workflow_cache,
            workflow_overflow,
            settings,
            _ticker: ticker,
        })
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Removes a module's compiled code from the cache.
    pub fn forget(&self, digest: &str) {
        for cache in self.cache.iter().chain(&self.workflow_cache) {
            cache.remove(digest.trim_start_matches("sha256:"));
        }
    }
}

#[doc(hidden)]
pub mod bench_support;
