//! `sandstep bench sandbox`: the cost of one attempt through the engine
//! against the plainest wasmtime loop on the same engine, and the compile and
//! cached-load time of each guest module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::limits::{EngineSettings, Limits};
use crate::sandbox::bench_support::bare_loop;
use crate::sandbox::{AttemptRequest, Sandbox};

#[derive(Debug, Serialize)]
pub struct SandboxReport {
    pub module: String,
    pub iterations: u32,
    /// Mean µs per attempt through `Sandbox::run`.
    pub engine_us: f64,
    /// Mean µs per attempt through the bare loop.
    pub bare_us: f64,
    pub ratio: f64,
    pub modules: Vec<ModuleTiming>,
    /// One GET per attempt over wasi:http against the host's own GET
    /// (when `rust/fetch-json.wasm` is among the guests).
    pub http: Option<super::http::HttpReport>,
}

#[derive(Debug, Serialize)]
pub struct ModuleTiming {
    pub module: String,
    pub size: u64,
    pub kind: String,
    pub compile_ms: f64,
    pub cached_load_ms: f64,
    /// Mean µs per attempt of the module's smallest valid input, after
    /// compilation (None for modules without one in [`TRIVIAL_INPUTS`]).
    pub attempt_us: Option<f64>,
    /// `attempt_us` over the engine path's trivial Rust step.
    pub vs_rust: Option<f64>,
}

/// The smallest valid input of each example module, by path under the
/// guests folder: what a language costs per attempt before the step does
/// any work (runtime start-up, JSON in and out).
const TRIVIAL_INPUTS: &[(&str, &str)] = &[
    ("rust/echo.wasm", "{}"),
    ("rust/stats-cmd.wasm", r#"{"numbers": [1]}"#),
    ("javascript/filter-orders.wasm", r#"{"orders": []}"#),
    ("typescript/rank-customers.wasm", r#"{"orders": []}"#),
    ("python/stats.wasm", r#"{"values": [1]}"#),
    ("c/histogram.wasm", r#"{"values": [1]}"#),
    ("c/top-words.wasm", r#"{"text": "a"}"#),
    ("go/invoice.wasm", r#"{"customers": [], "tax_rate": 0}"#),
    ("zig/checksum.wasm", r#"{"document": 1}"#),
    ("zig/checksum-step.wasm", r#"{"document": 1}"#),
    (
        "assemblyscript/format-money.wasm",
        r#"{"amounts": [], "currency": "EUR"}"#,
    ),
];

const ROUNDS: u32 = 5;

/// Runs the benchmark with the trivial step `trivial` and times every `.wasm`
/// under `guests` (one folder per language).
pub async fn run(guests: &Path, trivial: &Path, iterations: u32) -> anyhow::Result<SandboxReport> {
    let sandbox = Sandbox::new(EngineSettings::default(), None)?;
    let bytes = std::fs::read(trivial).with_context(|| format!("cannot read {}", trivial.display()))?;
    let module = sandbox
        .load(&bytes)
        .with_context(|| format!("{} was rejected", trivial.display()))?;
    let limits = Limits::default();
    let context = super::bench_context();
    let input = "{}";
    let request = AttemptRequest {
        input,
        args: &[],
        context: &context,
        limits: &limits,
        access: &crate::sandbox::NO_ACCESS,
    };

    // Warm both paths (pool slots, caches), then alternate rounds so drift
    // in machine load falls on both equally.
    let warmup = (iterations / 10).max(50);
    for _ in 0..warmup {
        let attempt = sandbox.run(&module, request).await;
        anyhow::ensure!(
            attempt.output().is_some(),
            "the trivial step failed: {:?}",
            attempt.failure()
        );
    }
    bare_loop(&sandbox, &module, input, warmup)
        .await
        .map_err(anyhow::Error::msg)?;

    let per_round = (iterations / ROUNDS).max(1);
    let (mut engine, mut bare) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        let started = std::time::Instant::now();
        for _ in 0..per_round {
            let attempt = sandbox.run(&module, request).await;
            debug_assert!(attempt.output().is_some());
        }
        engine += started.elapsed();
        bare += bare_loop(&sandbox, &module, input, per_round)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let total = f64::from(per_round * ROUNDS);
    let engine_us = engine.as_secs_f64() * 1e6 / total;
    let bare_us = bare.as_secs_f64() * 1e6 / total;

    Ok(SandboxReport {
        module: trivial.display().to_string(),
        iterations: per_round * ROUNDS,
        engine_us,
        bare_us,
        ratio: engine_us / bare_us,
        modules: time_modules(guests, engine_us).await?,
        http: http_line(&sandbox, guests).await?,
    })
}

/// The HTTP line, with the guests' `rust/fetch-json.wasm`.
async fn http_line(sandbox: &Sandbox, guests: &Path) -> anyhow::Result<Option<super::http::HttpReport>> {
    let path = guests.join("rust/fetch-json.wasm");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let module = sandbox
        .load(&bytes)
        .with_context(|| format!("{} was rejected", path.display()))?;
    Ok(Some(super::http::run(sandbox, &module, "rust/fetch-json.wasm").await?))
}

/// Compile time (no cache), cached-load time and, where the module has a
/// trivial input, per-attempt time of every guest module.
async fn time_modules(guests: &Path, rust_attempt_us: f64) -> anyhow::Result<Vec<ModuleTiming>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for language in std::fs::read_dir(guests).with_context(|| format!("cannot list {}", guests.display()))? {
        let language = language?.path();
        if language.is_dir() {
            for file in std::fs::read_dir(&language)? {
                let file = file?.path();
                if file.extension().is_some_and(|e| e == "wasm") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    let cache_dir = tempfile::tempdir()?;
    let uncached = Sandbox::new(EngineSettings::default(), None)?;
    let cached = Sandbox::new(EngineSettings::default(), Some(cache_dir.path()))?;
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file)?;
        let compiled = uncached
            .load(&bytes)
            .with_context(|| format!("{} was rejected", file.display()))?;
        cached.load(&bytes)?; // fills the cache
        let loaded = cached.load(&bytes)?;
        anyhow::ensure!(loaded.from_cache, "{} was not loaded from the cache", file.display());
        let name = file.strip_prefix(guests).unwrap_or(&file).display().to_string();
        let trivial = TRIVIAL_INPUTS.iter().find(|(path, _)| *path == name);
        let attempt_us = match trivial {
            Some((_, input)) => Some(
                time_attempts(&uncached, &compiled, input)
                    .await
                    .with_context(|| format!("{name} with {input}"))?,
            ),
            None => None,
        };
        out.push(ModuleTiming {
            module: name,
            size: compiled.info.size,
            kind: compiled.info.kind.to_string(),
            compile_ms: compiled.load_time.as_secs_f64() * 1e3,
            cached_load_ms: loaded.load_time.as_secs_f64() * 1e3,
            attempt_us,
            vs_rust: attempt_us.map(|us| us / rust_attempt_us),
        });
    }
    Ok(out)
}

/// Mean µs per attempt over about half a second (at least 20 attempts),
/// after a warm-up; every attempt must succeed.
async fn time_attempts(sandbox: &Sandbox, module: &crate::sandbox::Module, input: &str) -> anyhow::Result<f64> {
    const BUDGET: Duration = Duration::from_millis(500);
    let limits = Limits::default();
    let context = super::bench_context();
    let request = AttemptRequest {
        input,
        args: &[],
        context: &context,
        limits: &limits,
        access: &crate::sandbox::NO_ACCESS,
    };
    for _ in 0..5 {
        let attempt = sandbox.run(module, request).await;
        anyhow::ensure!(
            attempt.output().is_some(),
            "the attempt failed: {:?}",
            attempt.failure()
        );
    }
    let started = std::time::Instant::now();
    let mut attempts = 0u32;
    while attempts < 20 || (started.elapsed() < BUDGET && attempts < 100_000) {
        let attempt = sandbox.run(module, request).await;
        anyhow::ensure!(
            attempt.output().is_some(),
            "the attempt failed: {:?}",
            attempt.failure()
        );
        attempts += 1;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(attempts))
}

impl std::fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sandbox: trivial step {}, {} attempts per path, same engine",
            self.module, self.iterations
        )?;
        writeln!(
            f,
            "  engine path    {:7.1} µs/attempt  (fresh store + limits + WASI capture + instantiate + call + JSON check)",
            self.engine_us
        )?;
        writeln!(
            f,
            "  bare wasmtime  {:7.1} µs/attempt  (fresh store + InstancePre::instantiate + call)",
            self.bare_us
        )?;
        writeln!(f, "ratio: {:.2}", self.ratio)?;
        writeln!(
            f,
            "{:<34} {:>10} {:>8} {:>12} {:>12} {:>14} {:>8}",
            "module", "size", "kind", "compile", "cached load", "attempt", "vs rust"
        )?;
        for m in &self.modules {
            let (attempt, ratio) = match (m.attempt_us, m.vs_rust) {
                (Some(us), Some(ratio)) => (format!("{us:.1} µs"), format!("{ratio:.1}x")),
                _ => ("-".to_string(), "-".to_string()),
            };
            writeln!(
                f,
                "{:<34} {:>10} {:>8} {:>9.1} ms {:>9.2} ms {:>14} {:>8}",
                m.module,
                crate::units::format_size(m.size),
                m.kind,
                m.compile_ms,
                m.cached_load_ms,
                attempt,
                ratio
            )?;
        }
        if let Some(http) = &self.http {
            write!(f, "{http}")?;
        }
        Ok(())
    }
}
