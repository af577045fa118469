//! The baseline for `sandstep bench sandbox`: the plainest wasmtime loop on
//! the same engine (fresh store, `instantiate_async`, call), with none of the
//! engine's limits, capture or checks.

use std::time::{Duration, Instant};

use wasmtime::Store;

use super::state::{ComponentState, Meter};
use super::{bindings, Module, Pre, Sandbox};
use crate::limits::Limits;

/// Runs `iterations` bare attempts of a step component; returns the total time.
pub async fn bare_loop(sandbox: &Sandbox, module: &Module, input: &str, iterations: u32) -> Result<Duration, String> {
    let Pre::Step(pre) = &module.pre else {
        return Err("the baseline needs a step component".into());
    };
    let ctx = bindings::Context {
        run_id: "bench".into(),
        step_id: "bench".into(),
        attempt: 1,
        idempotency_key: "bench".into(),
    };
    let limits = Limits::default();
    let started = Instant::now();
    for _ in 0..iterations {
        let data = ComponentState::new(
            wasmtime_wasi::WasiCtx::builder().build(),
            Meter::new(&limits, &Default::default()),
            None,
            Default::default(),
        );
        let mut store = Store::new(&sandbox.engine, data);
        store.set_fuel(u64::MAX).map_err(|e| e.to_string())?;
        store.set_epoch_deadline(u64::MAX / 2);
        let step = pre.instantiate_async(&mut store).await.map_err(|e| format!("{e:#}"))?;
        step.call_run(&mut store, &ctx, input)
            .await
            .map_err(|e| format!("{e:#}"))?
            .map_err(|e| e.message)?;
    }
    Ok(started.elapsed())
}
