//! Per-attempt store state: the resource limiter that enforces memory and
//! table limits (and records peak memory), the log sink behind the host `log`
//! import, and which limit, if any, stopped the attempt.

use std::sync::{Arc, OnceLock};

use wasmtime::ResourceLimiter;

use super::files::{Files, FilesView};
use super::http::HttpGate;
use super::outcome::{Audit, Failure, Level, LogLine};
use crate::limits::Limits;

/// The first limit an attempt crossed, recorded where it was crossed (the
/// limiter, the `log` import, the captured streams). A guest that goes on to
/// cross another (it traps on the refused write and its runtime grows memory
/// to report the panic, say) is still named by the first.
#[derive(Clone, Default)]
pub(crate) struct Tripwire(Arc<OnceLock<Failure>>);

impl Tripwire {
    /// Records `failure` unless a limit was crossed before.
    pub(crate) fn trip(&self, failure: Failure) {
        let _ = self.0.set(failure);
    }

    pub(crate) fn tripped(&self) -> Option<Failure> {
        self.0.get().cloned()
    }
}

/// Enforces [`Limits::memory`] (summed over every memory of the attempt),
/// [`Limits::table_elements`] and the instance/table/memory counts.
pub(crate) struct Limiter {
    memory_limit: u64,
    table_limit: u64,
    instances: usize,
    memory_total: u64,
    pub(crate) peak_memory: u64,
    tripwire: Tripwire,
}

impl Limiter {
    fn new(limits: &Limits, tripwire: Tripwire) -> Self {
        Limiter {
            memory_limit: limits.memory,
            table_limit: limits.table_elements,
            instances: limits.instances as usize,
            memory_total: 0,
            peak_memory: 0,
            tripwire,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_total - current as u64 + desired as u64;
        if total > self.memory_limit {
            self.tripwire.trip(Failure::MemoryLimit {
                message: format!(
                    "memory limit of {} bytes exceeded (the guest asked for {total} bytes)",
                    self.memory_limit
                ),
            });
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached",
                self.memory_limit
            ));
        }
        self.memory_total = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_limit {
            self.tripwire.trip(Failure::MemoryLimit {
                message: format!(
                    "table limit of {} elements exceeded (the guest asked for {desired})",
                    self.table_limit
                ),
            });
            return Err(wasmtime::format_err!(
                "table limit of {} elements reached",
                self.table_limit
            ));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

/// Collects log lines under the byte and line limits. Captured stdout and
/// stderr are added after the call and count against the same budget.
pub(crate) struct LogSink {
    byte_limit: u64,
    line_limit: u64,
    bytes: u64,
    pub(crate) lines: Vec<LogLine>,
}

impl LogSink {
    pub(crate) fn new(limits: &Limits) -> Self {
        LogSink {
            byte_limit: limits.log_bytes,
            line_limit: limits.log_lines,
            bytes: 0,
            lines: Vec::new(),
        }
    }

    /// Adds one line; past a limit, returns the message naming that limit.
    pub(crate) fn push(&mut self, level: Level, message: String) -> Result<(), String> {
        self.bytes += message.len() as u64;
        if self.bytes > self.byte_limit {
            return Err(format!("logs larger than the limit of {} bytes", self.byte_limit));
        }
        if self.lines.len() as u64 >= self.line_limit {
            return Err(format!("more log lines than the limit of {}", self.line_limit));
        }
        self.lines.push(LogLine { level, message });
        Ok(())
    }

    /// Adds captured stream text, one line per line.
    pub(crate) fn push_text(&mut self, level: Level, text: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(text);
        for line in text.lines() {
            self.push(level, line.to_string())?;
        }
        Ok(())
    }
}

/// Everything that meters one attempt, shared by every kind of module.
pub(crate) struct Meter {
    pub limiter: Limiter,
    pub logs: LogSink,
    /// The first limit crossed; shared with the captured streams.
    pub tripwire: Tripwire,
}

impl Meter {
    pub(crate) fn new(limits: &Limits, tripwire: &Tripwire) -> Self {
        Meter {
            limiter: Limiter::new(limits, tripwire.clone()),
            logs: LogSink::new(limits),
            tripwire: tripwire.clone(),
        }
    }
}

/// Store data for a component (a step, or a command component).
pub(crate) struct ComponentState {
    pub wasi: wasmtime_wasi::WasiCtx,
    pub table: wasmtime::component::ResourceTable,
    pub meter: Meter,
    pub http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    /// Outbound HTTP under the step's grants; `None` without any.
    pub http: Option<Box<HttpGate>>,
    /// Directory grants and scratch.
    pub files: Files,
    /// Workflow code's host (`None` for steps and commands).
    pub workflow: Option<Box<super::workflow::WorkflowCtx>>,
}

impl ComponentState {
    pub fn new(wasi: wasmtime_wasi::WasiCtx, meter: Meter, http: Option<Box<HttpGate>>, files: Files) -> Self {
        ComponentState {
            wasi,
            table: wasmtime::component::ResourceTable::new(),
            meter,
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http,
            files,
            workflow: None,
        }
    }

    pub fn files(&mut self) -> FilesView<'_> {
        FilesView {
            ctx: self.wasi.filesystem(),
            table: &mut self.table,
            files: &mut self.files,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for ComponentState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        // No grant: a gate that allows nothing (never reached in practice:
        // a module importing wasi:http without a grant does not run).
        let gate = self
            .http
            .get_or_insert_with(|| Box::new(HttpGate::new(Vec::new(), std::time::Instant::now(), 0, 0)));
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: gate.as_mut(),
        }
    }
}

impl wasmtime_wasi::WasiView for ComponentState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Store data for a preview-1 core module command.
pub(crate) struct CoreState {
    pub wasi: wasmtime_wasi::p1::WasiP1Ctx,
    pub meter: Meter,
}

/// Access to the meter, whatever the store data.
pub(crate) trait Metered: Send + 'static {
    fn meter(&mut self) -> &mut Meter;

    /// What the attempt did under its grants, with a log line for each
    /// request refused or failed.
    fn audit(&mut self) -> Option<Audit> {
        None
    }
}

impl Metered for ComponentState {
    fn meter(&mut self) -> &mut Meter {
        &mut self.meter
    }

    fn audit(&mut self) -> Option<Audit> {
        if self.http.is_none() && self.files.is_empty() {
            return None;
        }
        let mut audit = Audit {
            http: Vec::new(),
            files: std::mem::take(&mut self.files.audit),
        };
        if let Some(gate) = &self.http {
            audit.http = std::mem::take(&mut gate.usage.lock().expect("usage lock").requests);
        }
        for used in &audit.http {
            if let Some(error) = &used.error {
                let _ = self
                    .meter
                    .logs
                    .push(Level::Warn, format!("http {} {}: {error}", used.method, used.host));
            }
        }
        if self.files.opens_not_listed > 0 {
            let _ = self.meter.logs.push(
                Level::Info,
                format!(
                    "files: {} more opens than the {} the audit lists",
                    self.files.opens_not_listed,
                    super::files::AUDITED_OPENS
                ),
            );
        }
        Some(audit)
    }
}

impl Metered for CoreState {
    fn meter(&mut self) -> &mut Meter {
        &mut self.meter
    }
}
