//! `sandstep bench workflow`: the executor's cost per step, in process with
//! an in-memory journal (no durability), against the sandbox's own cost per
//! attempt measured in the same process.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::limits::{Caps, EngineSettings, Limits};
use crate::run::{Executor, Journal, MemoryJournal, RunStatus, Secrets};
use crate::sandbox::{AttemptRequest, Sandbox};
use crate::service::modules::Pinned;
use crate::service::start::{Ready, RunRequest};

#[derive(Debug, Serialize)]
pub struct WorkflowReport {
    /// Mean µs of one trivial attempt through `Sandbox::run`, run one after another.
    pub sandbox_attempt_us: f64,
    pub scenarios: Vec<Scenario>,
    /// Per-item cost of the 20,000-item fan-out over the 2,000-item one
    /// (1.0: the cost of an item does not depend on how many there are).
    pub fan_out_growth: f64,
    /// µs per step of the cached scenarios (every step a hit), the worst.
    pub cache_hit_us: f64,
    /// µs a keyed concurrency limit adds to each attempt: the throttled
    /// chain's per step minus the plain chain's (in-memory books).
    pub throttle_overhead_us: f64,
    /// The 40-call code chain's executor overhead per step over the YAML
    /// chain's (target ≤ 1.5).
    pub code_over_yaml: f64,
    /// ms to replay a stored journal of 1,000 calls against its module
    /// (`run::code::replay`: instantiate, answer every call from the
    /// journal, check each), median of the rounds.
    pub replay_1000_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Scenario {
    pub name: String,
    pub steps: usize,
    /// Median of the repetitions.
    pub total_ms: f64,
    pub per_step_us: f64,
    /// per_step_us minus the sandbox's attempt time: what the executor adds
    /// (sequential scenarios only; with concurrency attempts overlap).
    pub overhead_us: Option<f64>,
}

const REPEAT: usize = 5;
/// Steps a round of a scenario makes, at least (one run of it, at least).
const STEPS_PER_ROUND: usize = 10_000;

/// Resolves every call's module reference to the one trivial step.
struct OneModule(Arc<crate::sandbox::Module>);

impl crate::run::code::ModuleSource for OneModule {
    fn resolve<'a>(
        &'a self,
        _reference: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<crate::sandbox::Module>, String>> + Send + 'a>>
    {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

pub async fn run(trivial: &Path, code: &Path) -> anyhow::Result<WorkflowReport> {
    let sandbox = Arc::new(Sandbox::new(EngineSettings::default(), None)?);
    let bytes = std::fs::read(trivial).with_context(|| format!("cannot read {}", trivial.display()))?;
    let echo = Arc::new(sandbox.load(&bytes)?);

    let limits = Limits::default();
    let context = super::bench_context();
    let request = AttemptRequest {
        input: r#"{"n": 1}"#,
        args: &[],
        context: &context,
        limits: &limits,
        access: &crate::sandbox::NO_ACCESS,
    };
    for _ in 0..500 {
        sandbox.run(&echo, request).await;
    }

    let code_bytes = std::fs::read(code).with_context(|| format!("cannot read {}", code.display()))?;
    let flow = Arc::new(sandbox.load(&code_bytes)?);
    let replay_flow = flow.clone();
    let code_module = super::CODE_MODULE.to_string();
    let pinned = Pinned {
        digests: [
            ("echo".to_string(), echo.info.digest.clone()),
            (code_module.clone(), flow.info.digest.clone()),
        ]
        .into(),
        modules: [("echo".to_string(), echo.clone()), (code_module, flow)].into(),
    };
    let secrets = Arc::new(Secrets::default());

    let scenarios = scenarios();
    // The fan-out scenarios go past the default cap of 10,000 items.
    let caps = Caps {
        for_each_items: 20_000,
        ..Caps::default()
    };
    // Round 0 of a cached scenario records every output; the timed rounds hit.
    let executor = Executor::new(sandbox.clone(), 64, caps.clone())
        .with_cache(Arc::new(crate::run::cache::MemoryCache::default()))
        .with_throttle(Arc::new(crate::run::throttle::MemoryThrottle::default()));
    executor.set_modules(Arc::new(OneModule(echo.clone())));
    let workflows = scenarios
        .iter()
        .map(|(_, yaml, ..)| {
            crate::workflow::load(yaml, &caps, None)
                .map(Arc::new)
                .map_err(|e| anyhow::anyhow!("bench workflow is invalid: {e:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Each round times the sandbox alone, then every scenario, so that all
    // figures (and their ratios) see the same moments of a shared machine.
    // A scenario's round makes about `STEPS_PER_ROUND` steps: one 40-step
    // run lasts under a millisecond, too short to time alone.
    let mut attempt_rounds = Vec::new();
    let mut totals = vec![Vec::new(); scenarios.len()];
    for round in 0..=REPEAT {
        let started = Instant::now();
        for _ in 0..STEPS_PER_ROUND {
            sandbox.run(&echo, request).await;
        }
        let attempt = started.elapsed() / STEPS_PER_ROUND as u32;
        for (i, ((name, _, steps, _), workflow)) in scenarios.iter().zip(&workflows).enumerate() {
            let runs = (STEPS_PER_ROUND / steps).max(1);
            let mut elapsed = Duration::ZERO;
            for _ in 0..runs {
                elapsed += run_once(&executor, workflow, &pinned, &secrets, *steps, name).await?;
            }
            if round > 0 {
                totals[i].push(elapsed / runs as u32); // round 0 warms up
            }
        }
        if round > 0 {
            attempt_rounds.push(attempt);
        }
    }
    let median = |mut rounds: Vec<Duration>| {
        rounds.sort();
        rounds[rounds.len() / 2]
    };
    let sandbox_attempt_us = median(attempt_rounds).as_secs_f64() * 1e6;
    let mut out = Vec::new();
    for ((name, _, steps, sequential), totals) in scenarios.iter().zip(totals) {
        let median = median(totals);
        let per_step_us = median.as_secs_f64() * 1e6 / *steps as f64;
        out.push(Scenario {
            name: name.to_string(),
            steps: *steps,
            total_ms: median.as_secs_f64() * 1e3,
            per_step_us,
            overhead_us: sequential.then_some(per_step_us - sandbox_attempt_us),
        });
    }
    let per_item = |steps: usize| out.iter().find(|s| s.steps == steps).map_or(0.0, |s| s.per_step_us);
    let fan_out_growth = per_item(20_000) / per_item(2000);
    let cache_hit_us = out
        .iter()
        .filter(|s| s.name.contains("hit"))
        .map(|s| s.per_step_us)
        .fold(0.0, f64::max);
    let named = |name: &str| out.iter().find(|s| s.name == name).map_or(0.0, |s| s.per_step_us);
    let throttle_overhead_us = named("40-step chain, every step throttled") - named("40-step sequential chain");
    let replay_1000_ms = replay_figure(&executor, &sandbox, &replay_flow, &pinned, &secrets, &caps).await?;
    let overhead = |name: &str| named(name) - sandbox_attempt_us;
    let code_over_yaml = overhead("40-call code chain (workflow code)") / overhead("40-step sequential chain");
    Ok(WorkflowReport {
        sandbox_attempt_us,
        scenarios: out,
        fan_out_growth,
        cache_hit_us,
        throttle_overhead_us,
        code_over_yaml,
        replay_1000_ms,
    })
}

/// One run of a scenario to its end, timed from its start (the run
/// prepared and queued beforehand).
async fn run_once(
    executor: &Executor,
    workflow: &Arc<crate::workflow::Workflow>,
    pinned: &Pinned,
    secrets: &Arc<Secrets>,
    steps: usize,
    name: &str,
) -> anyhow::Result<Duration> {
    let request = RunRequest {
        input: if workflow.code.is_some() {
            serde_json::json!({ "n": steps })
        } else {
            serde_json::Value::Null
        },
        ..RunRequest::default()
    };
    let ready = crate::service::start::prepare(workflow, pinned, secrets, request)
        .map_err(|e| anyhow::anyhow!("bench input refused: {e:?}"))?;
    let Ready {
        spec, queued, state, ..
    } = ready;
    let journal = MemoryJournal::new();
    journal.append(std::slice::from_ref(&queued)).await?;
    let started = Instant::now();
    let finished = executor
        .execute(&spec, state, &journal, CancellationToken::new())
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        finished.status == RunStatus::Completed,
        "{name}: run ended {:?}: {:?}",
        finished.status,
        finished.error
    );
    Ok(elapsed)
}

/// Runs the code chain with 1,000 calls, then replays its journal against
/// the same module `REPEAT` times: the median ms.
async fn replay_figure(
    executor: &Executor,
    sandbox: &Sandbox,
    flow: &crate::sandbox::Module,
    pinned: &Pinned,
    secrets: &Arc<Secrets>,
    caps: &Caps,
) -> anyhow::Result<f64> {
    use crate::run::code::replay::{replay, Replayed};
    let workflow = Arc::new(
        crate::workflow::load(&super::code_yaml("replay"), caps, None)
            .map_err(|e| anyhow::anyhow!("bench workflow is invalid: {e:?}"))?,
    );
    let request = RunRequest {
        input: serde_json::json!({ "n": 1000 }),
        ..RunRequest::default()
    };
    let ready = crate::service::start::prepare(&workflow, pinned, secrets, request)
        .map_err(|e| anyhow::anyhow!("bench input refused: {e:?}"))?;
    let run_id = ready.state.run_id.clone();
    let journal = MemoryJournal::new();
    journal.append(std::slice::from_ref(&ready.queued)).await?;
    let finished = executor
        .execute(&ready.spec, ready.state, &journal, CancellationToken::new())
        .await?;
    anyhow::ensure!(
        finished.status == RunStatus::Completed,
        "the 1,000-call run ended {:?}",
        finished.status
    );
    let events = journal.events();
    let limits = crate::limits::WorkflowLimits::default();
    let mut times = Vec::new();
    for round in 0..=REPEAT {
        let started = Instant::now();
        let replayed = replay(sandbox, flow, &workflow, &run_id, &events, &limits).await;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            matches!(replayed, Replayed::Ended { .. }),
            "the replay stopped: {replayed:?}"
        );
        if round > 0 {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    Ok(super::Spread::of(&times).median)
}

impl std::fmt::Display for WorkflowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "workflow: in process, in-memory journal, trivial step echo; median of {REPEAT} rounds, each of every scenario"
        )?;
        writeln!(f, "  sandbox attempt (baseline)  {:8.1} µs", self.sandbox_attempt_us)?;
        writeln!(
            f,
            "{:<38} {:>10} {:>12} {:>18}",
            "scenario", "total", "per step", "executor overhead"
        )?;
        for s in &self.scenarios {
            let overhead = match s.overhead_us {
                Some(o) => format!("{o:.1} µs/step"),
                None if s.name.contains("hit") => "(no wasm)".to_string(),
                None => "(concurrent)".to_string(),
            };
            writeln!(
                f,
                "{:<38} {:>7.2} ms {:>9.1} µs {:>18}",
                s.name, s.total_ms, s.per_step_us, overhead
            )?;
        }
        writeln!(
            f,
            "per-item cost, 20,000 items over 2,000: {:.2}x (target ≤ 1.2)",
            self.fan_out_growth
        )?;
        writeln!(
            f,
            "cache hit per step: {:.1} µs, no wasm run (target ≤ 50; an attempt is {:.1} µs)",
            self.cache_hit_us, self.sandbox_attempt_us
        )?;
        writeln!(
            f,
            "keyed concurrency limit per attempt: {:.1} µs (throttled chain minus plain chain; target ≤ 20)",
            self.throttle_overhead_us
        )?;
        writeln!(
            f,
            "code chain's executor overhead per step over the YAML chain's: {:.2}x (target ≤ 1.5)",
            self.code_over_yaml
        )?;
        writeln!(
            f,
            "replay of a 1,000-call journal against its module: {:.1} ms (target ≤ 20)",
            self.replay_1000_ms
        )?;
        Ok(())
    }
}

/// Each scenario: its name, definition, steps and whether it is sequential
/// (its overhead over an attempt is meaningful).
fn scenarios() -> Vec<(&'static str, String, usize, bool)> {
    let chain = super::chain_yaml(40);
    let items: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let for_each = |concurrency: u32| {
        format!(
            "name: fan\nconcurrency: {concurrency}\nsteps:\n  - id: each\n    module: echo\n    for_each: [{}]\n    input: {{ i: \"{{{{ item }}}}\", at: \"{{{{ index }}}}\" }}\noutput: \"{{{{ steps.each.output | length }}}}\"\n",
            items.join(", ")
        )
    };

    let cached_chain = chain.replace("module: echo,", "module: echo, cache: true,");
    let cached_items = for_each(1).replace("    module: echo\n", "    module: echo\n    cache: true\n");
    // Every step under a keyed limit that never blocks: what asking costs.
    let throttled_chain = chain.replace(
        "module: echo,",
        "module: echo, throttle: { key: \"{{ run.id }}\", concurrency: 64 },",
    );
    let throttled_items = for_each(64).replace(
        "    module: echo\n",
        "    module: echo\n    throttle: { key: \"{{ item % 10 }}\", concurrency: 8 }\n",
    );
    vec![
        ("40-step sequential chain", chain, 40, true),
        (
            "40-call code chain (workflow code)",
            super::code_yaml("cchain"),
            40,
            true,
        ),
        ("1-step run", super::chain_yaml(1), 1, true),
        ("1-call code run (workflow code)", super::code_yaml("cchain"), 1, true),
        ("40-step chain, every step throttled", throttled_chain, 40, true),
        ("40-step chain, every step a cache hit", cached_chain, 40, false),
        ("1,000-item for_each, every item a hit", cached_items, 1000, false),
        ("1,000-item for_each, concurrency 1", for_each(1), 1000, true),
        ("1,000-item for_each, concurrency 64", for_each(64), 1000, false),
        ("1,000-item for_each, 64, 10 keys of 8", throttled_items, 1000, false),
        (
            "for_each over a step's 2,000 items",
            super::fan_out_yaml(2000),
            2000,
            false,
        ),
        (
            "for_each over a step's 20,000 items",
            super::fan_out_yaml(20_000),
            20_000,
            false,
        ),
    ]
}
