//! Host bindings for the `sandstep:step/step` world in `wit/step.wit`.
//! `log` may trap (past the log limits); `run` is called asynchronously so a
//! timeout can abandon it even while the guest is blocked in a host call.

wasmtime::component::bindgen!({
    path: "wit/step.wit",
    world: "step",
    imports: { default: trappable },
    exports: { default: async },
});

use super::outcome::{Failure, Level};
use super::state::ComponentState;

impl self::sandstep::step::host::Host for ComponentState {
    /// Records one log line; past the attempt's log limits the guest traps and
    /// the attempt fails with `logs_too_large`.
    fn log(&mut self, level: self::sandstep::step::host::Level, message: String) -> wasmtime::Result<()> {
        use self::sandstep::step::host::Level as Wit;
        let level = match level {
            Wit::Trace => Level::Trace,
            Wit::Debug => Level::Debug,
            Wit::Info => Level::Info,
            Wit::Warn => Level::Warn,
            Wit::Error => Level::Error,
        };
        if let Err(refused) = self.meter.logs.push(level, message) {
            let error = wasmtime::format_err!("{refused}");
            self.meter.tripwire.trip(Failure::LogsTooLarge { message: refused });
            return Err(error);
        }
        Ok(())
    }
}

impl self::sandstep::step::types::Host for ComponentState {}
