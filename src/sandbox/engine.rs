//! The process-wide wasmtime engine: fuel metering, epoch interruption, a
//! bounded wasm stack, and the pooling instance allocator sized from
//! [`EngineSettings`].

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::EngineSettings;

/// Builds the engine. The pooling allocator reserves its slots up front; if
/// the host refuses the reservation (a tight `ulimit -v`), the engine falls
/// back to on-demand allocation, which is slower but enforces the same limits.
pub(crate) fn build(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    let pooled = config(settings, true);
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(err) => {
            tracing::warn!(error = %err, "pooling allocator unavailable, allocating on demand");
            Engine::new(&config(settings, false))
        }
    }
}

/// Linear memory kept resident per pooled slot and reset in place.
const KEEP_RESIDENT: usize = 2 << 20;

fn config(settings: &EngineSettings, pooling: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(settings.max_wasm_stack)
        // Host calls run on the same fiber stack: leave them room above the
        // guest's share.
        .async_stack_size(settings.max_wasm_stack + (1 << 20));
    if pooling {
        let pool = pool(settings, settings.max_concurrent_instances);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// The pooling allocator's slots for `slots` instances at once, each within
/// the engine's limits: memories, tables and stacks are reset in place and
/// kept warm for the module that last used them.
pub(crate) fn pool(settings: &EngineSettings, slots: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memory_size(settings.max_memory as usize)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(64)
        .table_elements(50_000)
        // Every slot may stay warm for the module it last ran: with
        // fewer (64), once components with many memories (JavaScript,
        // Python) had run, small modules' attempts landed on slots
        // another module had left resident and paid for resetting them
        // (6 µs -> 28 µs per trivial attempt in `bench sandbox`).
        .max_unused_warm_slots(slots)
        // Reset small memories, tables and stacks in place (only their
        // dirty pages, found with PAGEMAP_SCAN where the kernel has it)
        // instead of `madvise`: each `madvise` is a TLB shootdown across
        // every core running the process, which dominated attempts once
        // two threads were busy.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(128 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(16);
    pool
}
