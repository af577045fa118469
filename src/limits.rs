//! Per-attempt limits: what one step attempt may consume, with the unit, the
//! default and what happens when the limit is hit. Every limit ends the
//! attempt with its own [`Failure`](crate::sandbox::Failure) kind; the host
//! and every other attempt carry on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to one attempt, each in its own store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel: wasmtime's count of executed instructions (roughly one unit per
    /// wasm operator). Default 5,000,000,000 (a few seconds of pure compute).
    /// Hit: the guest traps and the attempt fails with `fuel_exhausted`
    /// (not retried: the same input would burn the same fuel again).
    pub fuel: u64,
    /// Linear memory, in bytes, summed over every memory of the instance.
    /// Default 64 MiB. Hit: the `memory.grow` (or the instantiation) that would
    /// cross it traps and the attempt fails with `memory_limit` (not retried).
    ///
    /// It also bounds what one host call may make the host copy out of the
    /// guest (wasmtime's "hostcall fuel", counted in host bytes, strings and
    /// lists alike, and the step's result as well). A single string or byte
    /// list never reaches it, since it lies in the guest's memory, so a large
    /// log line or output is named by the log or output limit. Only a call
    /// whose lists alias memory to be copied many times over can cross it:
    /// the attempt fails with `host_call_too_large` (not retried).
    pub memory: u64,
    /// Elements per table. Default 20,000. Hit: the `table.grow` that would
    /// cross it traps, and the attempt fails with `memory_limit` (tables are
    /// memory too) naming the table limit.
    pub table_elements: u64,
    /// Core instances, tables and memories one attempt may create. Default
    /// 64 each (a component made by componentize-js uses about a dozen).
    /// Hit: instantiation fails with `instantiation_failed`.
    pub instances: u32,
    /// Wall-clock time for the whole attempt (instantiation, the call, and
    /// time spent blocked in host calls such as a WASI sleep). Default 30 s.
    /// Hit: the guest is interrupted at the next epoch tick (every 10 ms) or
    /// its host call is abandoned, and the attempt fails with `timeout`.
    pub timeout: Duration,
    /// Output, in bytes: the JSON a step returns, or a command's stdout.
    /// Default 1 MiB. Hit: the attempt fails with `output_too_large`.
    pub output_bytes: u64,
    /// Log text, in bytes: host `log` messages plus a step's stdout/stderr
    /// (a command's stderr). Default 256 KiB. Hit: the guest traps at the
    /// write or `log` call that crosses it and the attempt fails with
    /// `logs_too_large`.
    pub log_bytes: u64,
    /// Log lines (host `log` calls plus captured lines). Default 10,000, so
    /// a flood of tiny messages is stopped as surely as a few huge ones.
    /// Hit: as for `log_bytes`.
    pub log_lines: u64,
    /// Outbound HTTP requests (steps granted `http` hosts). Default 100.
    /// Hit: the request fails inside the guest (an HTTP error code) and is
    /// logged on the attempt; the guest decides what to do.
    pub http_requests: u64,
    /// Outbound HTTP body bytes, request plus response bodies. Default
    /// 16 MiB. Hit: the body that crosses it fails inside the guest.
    pub http_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 5_000_000_000,
            memory: 64 << 20,
            table_elements: 20_000,
            instances: 64,
            timeout: Duration::from_secs(30),
            output_bytes: 1 << 20,
            log_bytes: 256 << 10,
            log_lines: 10_000,
            http_requests: 100,
            http_bytes: 16 << 20,
        }
    }
}

/// Limits on a code workflow's own code (`workflow_limits:`), across every
/// revival of its run: the code is replayed from its journal after a pause
/// or a crash, and replaying costs the same fuel again, so these bound one
/// instance from the run's start to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowLimits {
    /// Fuel for the workflow code itself (not its steps). Default
    /// 5,000,000,000, as for one attempt. Counts toward the run's
    /// `budget.fuel`. Hit: the run fails with `fuel_exhausted`.
    pub fuel: u64,
    /// Linear memory of the workflow instance, in bytes. Default 64 MiB.
    /// Hit: the run fails with `memory_limit`.
    pub memory: u64,
    /// Calls the code may make (steps, children, sleeps, waits, `now`,
    /// `random`, awaits, markers). Default 10,000. Hit: the run fails with
    /// `too_many_calls`.
    pub calls: u32,
}

impl Default for WorkflowLimits {
    fn default() -> Self {
        WorkflowLimits {
            fuel: 5_000_000_000,
            memory: 64 << 20,
            calls: 10_000,
        }
    }
}

/// Process-wide settings of the sandbox: fixed when the engine is built,
/// shared by every attempt.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Native stack a guest may use, in bytes. Default 512 KiB. Hit: the
    /// attempt fails with `stack_overflow`.
    pub max_wasm_stack: usize,
    /// Largest linear memory any attempt may be granted (the cap on
    /// [`Limits::memory`]); sizes the pooling allocator's slots. Default 1 GiB.
    pub max_memory: u64,
    /// Attempts that may hold an instance at once (pooling allocator slots).
    /// Default 256. More concurrent attempts wait for instantiation to fail
    /// over to a clear `instantiation_failed` rather than exhaust the host.
    pub max_concurrent_instances: u32,
    /// Workflow code instances held in the pooling allocator's slots at
    /// once. Default 64. An instance starts there in about a third of the
    /// time it takes on demand; once every slot is taken, more instances
    /// are allocated on demand (slower to start, never refused).
    pub max_pooled_workflows: u32,
    /// How often the epoch ticker advances, the granularity of timeouts.
    /// Default 10 ms.
    pub epoch_tick: Duration,
    /// Largest module binary accepted, in bytes. Default 64 MiB.
    pub max_module_bytes: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_wasm_stack: 512 << 10,
            max_memory: 1 << 30,
            max_concurrent_instances: 256,
            max_pooled_workflows: 64,
            epoch_tick: Duration::from_millis(10),
            max_module_bytes: 64 << 20,
        }
    }
}

/// Caps no workflow can exceed, set by whoever runs the engine. A definition
/// asking for more is rejected when it is validated.
#[derive(Debug, Clone)]
pub struct Caps {
    /// Largest `limits.fuel`. Default 100,000,000,000.
    pub fuel: u64,
    /// Largest `limits.memory`, in bytes. Default 1 GiB (the engine's slot size).
    pub memory: u64,
    /// Largest step `timeout`. Default 1 h.
    pub timeout: Duration,
    /// Largest `limits.output`, in bytes. Default 16 MiB.
    pub output_bytes: u64,
    /// Largest `limits.logs`, in bytes. Default 4 MiB.
    pub log_bytes: u64,
    /// Most items one `for_each` may have; more fails the step. Default 10,000.
    pub for_each_items: usize,
    /// Most attempts one run may have running at once. Default 64.
    pub concurrency: u32,
    /// Most attempts per step (or item). Default 100.
    pub max_attempts: u32,
    /// Most levels of sub-workflows below a root run. Default 8.
    pub workflow_depth: u32,
    /// Largest `limits.http_requests`. Default 10,000.
    pub http_requests: u64,
    /// Largest `limits.http_bytes`. Default 1 GiB.
    pub http_bytes: u64,
    /// Largest `grants.files.scratch`. Default 1 GiB.
    pub scratch_bytes: u64,
    /// What workflows may grant: `--allow-http`, `--allow-read`. Default nothing.
    pub grants: crate::grants::ServerGrants,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            fuel: 100_000_000_000,
            memory: EngineSettings::default().max_memory,
            timeout: Duration::from_secs(3600),
            output_bytes: 16 << 20,
            log_bytes: 4 << 20,
            for_each_items: 10_000,
            concurrency: 64,
            max_attempts: 100,
            workflow_depth: 8,
            http_requests: 10_000,
            http_bytes: 1 << 30,
            scratch_bytes: 1 << 30,
            grants: crate::grants::ServerGrants::default(),
        }
    }
}
