//! `sandstep bench server`: the durable path through the real HTTP server
//! on 127.0.0.1 (SQLite in a temporary directory, every event committed
//! before dependents start): 1-step runs per second over HTTP, single
//! starts, durable step completions per second, batch starts, single runs
//! end to end (a 40-step chain, the same throttled and cached, a 2,000-item
//! fan-out, the chain as workflow code). Each figure is printed beside its
//! floor ([`super::floor`]), measured right after it in the same round.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde::Serialize;
use serde_json::{json, Value};

use super::floor::{Figure, Floor, Rounds, Work};
use super::unused::{self, Unused};
use super::Spread;
use crate::store::floor::Committed;

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub rounds: usize,
    /// Runs/s: 1-step runs from 16 clients, each waiting (`?wait`).
    pub one_step_runs_per_s: Figure,
    /// Runs/s: 1-step runs started from 32 clients without waiting
    /// (acceptance: each answered once stored).
    pub single_starts_per_s: Figure,
    /// Step completions/s: 256 40-step runs at once.
    pub durable_completions_per_s: Figure,
    /// Runs/s through batch starts of 1,000: each batch timed from request
    /// to answer (every run stored before the answer), after the previous
    /// batch's runs ended.
    pub batch_runs_per_s: Figure,
    /// ms: single 40-step runs, POST to completed answer.
    pub chain_40_ms: Figure,
    /// ms: the same chain with every step under a keyed concurrency limit
    /// that never blocks (slots asked for and given back through the
    /// store); its floor is the plain chain's.
    pub throttled_chain_40_ms: Figure,
    /// µs per attempt, the throttled chain minus the plain one, per round.
    pub throttle_overhead_us: Spread,
    /// ms: the chain with every step a cache hit (`cache: true`, the same
    /// inputs as a run before); its floor commits what it committed, with
    /// no attempt.
    pub cached_chain_40_ms: Figure,
    /// µs per step, the cached chain over its floor, per round: what a
    /// cache hit costs beyond committing its record.
    pub cache_hit_us: Spread,
    /// µs per hit, per round: the cached chain minus a 1-step cached run,
    /// over the 39 hits between them (what one more hit costs, without the
    /// run's own start and end).
    pub cache_hit_marginal_us: Spread,
    /// ms: a 2,000-item for_each over a previous step's output.
    pub fan_out_2000_ms: Figure,
    /// ms per round to write that run's bundle (4,005 events and the
    /// module; target under 1 s for 1,000 steps).
    pub bundle_2000_ms: Spread,
    /// ms: workflow code making 40 `echo` calls one after the other; its
    /// floor is the YAML chain's.
    pub code_chain_40_ms: Figure,
    /// Per round, the code chain over the YAML chain (target ≤ 1.5).
    pub code_over_yaml: Spread,
    /// The durable figure of chains that declare a capability and do not
    /// use it, against the plain chain's ([`unused`]).
    pub unused_capabilities: Vec<Unused>,
    /// Step completions/s: the durable figure on a second server that
    /// exports every span to a local OTLP receiver (`--otlp-endpoint`).
    pub traced_durable_completions_per_s: Spread,
    /// Per round, how much slower the traced durable figure is than the
    /// plain one, in percent (target ≤ 10).
    pub tracing_cost_percent: Spread,
}

const ROUNDS: usize = 5;
/// Clients of the 1-step runs with `?wait`, and runs a round.
const CLIENTS: usize = 16;
const ONE_STEP_RUNS: usize = 2000;
/// Clients of the single starts without waiting, and starts a round.
const STARTERS: usize = 32;
const STARTS: usize = 4000;
/// 40-step runs at once for the durable completions.
const CHAIN_RUNS: usize = 256;
const BATCH_SIZE: usize = 1000;
const BATCHES: usize = 5;

pub async fn run(trivial: &Path, code: &Path) -> anyhow::Result<ServerReport> {
    let chain = super::chain_yaml(40);
    let mut workflows = measured_workflows(&chain);
    workflows.extend(unused::workflows(&chain));
    let variants = unused::variants();
    let mut unused_measured = unused::Measured::default();
    let server = super::BenchServer::start(trivial, code, &workflows).await?;
    let sink = super::otlp_sink().await?;
    let traced_server =
        super::BenchServer::start_traced(trivial, code, &[("chain", chain.clone())], Some(sink)).await?;
    let traced_bench = Bench {
        http: traced_server.http.clone(),
        base: traced_server.base.clone(),
        service: traced_server.service.clone(),
    };
    let mut floor = Floor::start(trivial).await?;
    let bench = Bench {
        http: server.http.clone(),
        base: server.base.clone(),
        service: server.service.clone(),
    };
    // Warm up (the cached chain's first run records its outputs).
    for _ in 0..5 {
        bench.single("cchain", json!({ "input": { "n": 40 } })).await?;
    }
    bench.single("kchain", json!({})).await?;
    bench.single("kone", json!({})).await?;
    for _ in 0..50 {
        bench.single("one", json!({})).await?;
    }

    let mut one_step = Rounds::default();
    let mut starts = Rounds::default();
    let mut durable = Rounds::default();
    let mut batched = Rounds::default();
    let (mut chain, mut throttled, mut cached) = (Rounds::default(), Rounds::default(), Rounds::default());
    let (mut fan_out, mut code_chain) = (Rounds::default(), Rounds::default());
    let (mut throttle_overhead, mut cache_overhead, mut code_over_yaml) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cache_marginal, mut bundles) = (Vec::new(), Vec::new());
    let (mut traced, mut tracing_cost) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (took, work) = bench.one_step_runs().await?;
        one_step.rate(ONE_STEP_RUNS, took, floor.of(work).await?);
        let (took, work) = bench.single_starts().await?;
        starts.rate(STARTS, took, floor.of(work).await?);
        // The traced server first in every other round (the machine drifts).
        let traced_first = round % 2 == 1;
        let traced_took = if traced_first {
            Some(traced_bench.durable().await?.0)
        } else {
            None
        };
        let (took, work) = bench.durable().await?;
        durable.rate(CHAIN_RUNS * 40, took, floor.of(work).await?);
        let traced_took = match traced_took {
            Some(took) => took,
            None => traced_bench.durable().await?.0,
        };
        traced.push((CHAIN_RUNS * 40) as f64 / traced_took.as_secs_f64());
        tracing_cost.push((traced_took.as_secs_f64() / took.as_secs_f64() - 1.0) * 100.0);
        // In an order that turns each round, so that no variant is always
        // measured early or late in it (the machine drifts within a round).
        let plain = durable.last();
        for n in (0..variants.len()).map(|i| (i + round) % variants.len()) {
            let variant = &variants[n];
            let (took, _) = bench.durable_of(variant.workflow, variant.body.clone()).await?;
            unused_measured.push(n, (CHAIN_RUNS * 40) as f64 / took.as_secs_f64(), plain);
        }
        let (took, work) = bench.batches().await?;
        batched.rate(BATCH_SIZE * BATCHES, took, floor.of(work).await?);

        // Single runs, one at a time, end to end.
        let (took, work) = bench.timed("chain", json!({}), 40).await?;
        let chain_floor = floor.of(work).await?;
        chain.ms(took, chain_floor);
        let (took, _) = bench.timed("tchain", json!({}), 40).await?;
        throttled.ms(took, chain_floor);
        throttle_overhead.push((throttled.last() - chain.last()) * 1e3 / 40.0);
        let (took, work) = bench.timed("kchain", json!({}), 0).await?;
        let cached_floor = floor.of(work).await?;
        cached.ms(took, cached_floor);
        cache_overhead.push((took.as_secs_f64() - cached_floor.as_secs_f64()) * 1e6 / 40.0);
        let (one, _) = bench.timed("kone", json!({}), 0).await?;
        cache_marginal.push((took.as_secs_f64() - one.as_secs_f64()) * 1e6 / 39.0);
        let (took, work) = bench.timed("fan", json!({}), 2001).await?;
        fan_out.ms(took, floor.of(work).await?);
        bundles.push(bench.bundle_latest("fan").await?);
        let (took, _) = bench.timed("cchain", json!({ "input": { "n": 40 } }), 40).await?;
        code_chain.ms(took, chain_floor);
        code_over_yaml.push(code_chain.last() / chain.last());
    }
    server.stop().await;
    traced_server.stop().await;
    Ok(ServerReport {
        rounds: ROUNDS,
        one_step_runs_per_s: one_step.figure(true),
        single_starts_per_s: starts.figure(true),
        durable_completions_per_s: durable.figure(true),
        batch_runs_per_s: batched.figure(true),
        chain_40_ms: chain.figure(false),
        throttled_chain_40_ms: throttled.figure(false),
        throttle_overhead_us: Spread::of(&throttle_overhead),
        cached_chain_40_ms: cached.figure(false),
        cache_hit_us: Spread::of(&cache_overhead),
        cache_hit_marginal_us: Spread::of(&cache_marginal),
        fan_out_2000_ms: fan_out.figure(false),
        bundle_2000_ms: Spread::of(&bundles),
        code_chain_40_ms: code_chain.figure(false),
        code_over_yaml: Spread::of(&code_over_yaml),
        unused_capabilities: unused_measured.report(&variants),
        traced_durable_completions_per_s: Spread::of(&traced),
        tracing_cost_percent: Spread::of(&tracing_cost),
    })
}

/// The workflows the figures run (besides the unused-capability variants):
/// a 1-step run, a 2,000-item fan-out, the 40-step chain plain, throttled
/// and cached, a 1-step cached run, and the code chain.
fn measured_workflows(chain: &str) -> Vec<(&'static str, String)> {
    let one = "name: one\nsteps:\n  - { id: s, module: echo, input: { x: 1 } }\n".to_string();
    vec![
        ("one", one),
        ("fan", super::fan_out_yaml(2000)),
        (
            "tchain",
            chain.replace("name: chain", "name: tchain").replace(
                "module: echo,",
                "module: echo, throttle: { key: \"{{ run.id }}\", concurrency: 64 },",
            ),
        ),
        (
            "kchain",
            chain
                .replace("name: chain", "name: kchain")
                .replace("module: echo,", "module: echo, cache: true,"),
        ),
        (
            "kone",
            super::chain_yaml(1)
                .replace("name: chain", "name: kone")
                .replace("module: echo,", "module: echo, cache: true,"),
        ),
        ("chain", chain.to_string()),
        ("cchain", super::code_yaml("cchain")),
    ]
}

/// The server under test.
struct Bench {
    http: reqwest::Client,
    base: String,
    service: std::sync::Arc<crate::service::Service>,
}

impl Bench {
    /// Starts a run of `workflow` with `body` and waits for it to complete.
    async fn single(&self, workflow: &str, body: Value) -> anyhow::Result<()> {
        complete(self.http.clone(), self.url(workflow), body).await
    }

    fn url(&self, workflow: &str) -> String {
        format!("{}/v1/workflows/{workflow}/runs?wait=60s", self.base)
    }

    /// Times `load` and says what it did: `attempts` attempts, `requests`
    /// requests from `clients` clients, and what the writer committed.
    async fn measured(
        &self,
        load: impl std::future::Future<Output = anyhow::Result<()>>,
        attempts: usize,
        requests: usize,
        clients: usize,
    ) -> anyhow::Result<(Duration, Work)> {
        let before = self.service.committed();
        let started = Instant::now();
        load.await?;
        let took = started.elapsed();
        let work = Work {
            attempts: attempts as u32,
            committed: self.service.committed().since(before),
            requests,
            clients,
        };
        Ok((took, work))
    }

    /// One run of `workflow`, end to end, and its work (`attempts` steps).
    async fn timed(&self, workflow: &str, body: Value, attempts: usize) -> anyhow::Result<(Duration, Work)> {
        self.measured(self.single(workflow, body), attempts, 1, 1).await
    }

    /// ms to write the bundle of `workflow`'s latest run.
    async fn bundle_latest(&self, workflow: &str) -> anyhow::Result<f64> {
        let filter = crate::store::runs::RunFilter {
            workflow: Some(workflow.into()),
            limit: 1,
            ..Default::default()
        };
        let runs = self.service.list(&filter).await?;
        let id = &anyhow::Context::context(runs.first(), "the run to bundle is not listed")?
            .row
            .id;
        let started = Instant::now();
        let zip = self.service.bundle(id).await?;
        let took = started.elapsed();
        ensure!(zip.len() > 1000, "a bundle of {} bytes", zip.len());
        Ok(took.as_secs_f64() * 1e3)
    }

    /// 1-step runs from `CLIENTS` concurrent clients, each waiting for its run.
    async fn one_step_runs(&self) -> anyhow::Result<(Duration, Work)> {
        let url = self.url("one");
        let load = self.clients(CLIENTS, ONE_STEP_RUNS, move |http| {
            complete(http, url.clone(), json!({}))
        });
        self.measured(load, ONE_STEP_RUNS, ONE_STEP_RUNS, CLIENTS).await
    }

    /// 1-step runs started from `STARTERS` clients without waiting: each
    /// start answered once stored. Not timed: the runs' execution after.
    /// The floor commits the starts' rows in as many commits as the
    /// writer made meanwhile (some of them carried the runs' own events).
    async fn single_starts(&self) -> anyhow::Result<(Duration, Work)> {
        let before = self.service.committed();
        let started = Instant::now();
        let url = format!("{}/v1/workflows/one/runs", self.base);
        self.clients(STARTERS, STARTS, move |http| {
            let url = url.clone();
            async move {
                let answer = http.post(url).json(&json!({})).send().await?;
                ensure!(answer.status() == 201, "a start was refused: {}", answer.text().await?);
                anyhow::Ok(())
            }
        })
        .await?;
        let took = started.elapsed();
        let commits = self.service.committed().since(before).commits;
        idle(&self.http, &self.base).await?;
        let work = Work {
            attempts: 0,
            committed: Committed {
                commits,
                events: STARTS as u64,
                started: STARTS as u64,
                moved: 0,
            },
            requests: STARTS,
            clients: STARTERS,
        };
        Ok((took, work))
    }

    /// Durable step completions: `CHAIN_RUNS` 40-step chains at once, each
    /// step committed before the next one starts.
    async fn durable(&self) -> anyhow::Result<(Duration, Work)> {
        self.durable_of("chain", json!({})).await
    }

    /// The same with `workflow`'s chains, each started with `body`.
    async fn durable_of(&self, workflow: &str, body: Value) -> anyhow::Result<(Duration, Work)> {
        let url = self.url(workflow);
        let load = self.clients(CHAIN_RUNS, CHAIN_RUNS, move |http| {
            complete(http, url.clone(), body.clone())
        });
        self.measured(load, CHAIN_RUNS * 40, CHAIN_RUNS, CHAIN_RUNS).await
    }

    /// Batch starts: each batch timed from request to answer (every run
    /// stored durably before it), after the previous batch's runs ended,
    /// so the figure is acceptance, not the execution measured above.
    async fn batches(&self) -> anyhow::Result<(Duration, Work)> {
        let body = json!({ "runs": (0..BATCH_SIZE).map(|i| json!({ "input": { "i": i } })).collect::<Vec<_>>() });
        let mut accepting = Duration::ZERO;
        for _ in 0..BATCHES {
            idle(&self.http, &self.base).await?;
            let started = Instant::now();
            let answer = self
                .http
                .post(format!("{}/v1/workflows/one/runs/batch", self.base))
                .json(&body)
                .send()
                .await?;
            ensure!(answer.status() == 201, "a batch was refused: {}", answer.text().await?);
            accepting += started.elapsed();
        }
        idle(&self.http, &self.base).await?;
        let work = Work {
            attempts: 0,
            committed: Committed {
                commits: BATCHES as u64,
                events: (BATCH_SIZE * BATCHES) as u64,
                started: (BATCH_SIZE * BATCHES) as u64,
                moved: 0,
            },
            requests: BATCHES,
            clients: 1,
        };
        Ok((accepting, work))
    }

    /// `total` calls of `call` from `clients` concurrent clients.
    async fn clients<F, Fut>(&self, clients: usize, total: usize, call: F) -> anyhow::Result<()>
    where
        F: Fn(reqwest::Client) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let mut tasks = Vec::with_capacity(clients);
        for client in 0..clients {
            let (http, call) = (self.http.clone(), call.clone());
            let mine = (client..total).step_by(clients).count();
            tasks.push(tokio::spawn(async move {
                for _ in 0..mine {
                    call(http.clone()).await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    }
}

/// POSTs `body` to `url` (a start with `?wait`): the run must complete.
async fn complete(http: reqwest::Client, url: String, body: Value) -> anyhow::Result<()> {
    let run: Value = http.post(url).json(&body).send().await?.json().await?;
    ensure!(run["status"] == "completed", "a run did not complete: {run}");
    Ok(())
}

/// Waits until the server drives no run (the batches' runs have finished).
async fn idle(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
        let depth = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sandstep_queue_depth "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if depth == 0 {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "runs still going after 120 s: {depth}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl std::fmt::Display for ServerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "server: real HTTP on 127.0.0.1, SQLite (WAL, fsync per group commit), trivial step echo; median of {} rounds",
            self.rounds
        )?;
        writeln!(
            f,
            "  (floor: the same attempts bare, the same rows committed bare in as many commits, bare HTTP round trips)"
        )?;
        let lines: [(&str, &Figure, &str); 9] = [
            ("1-step runs, ?wait, 16 clients", &self.one_step_runs_per_s, "runs/s"),
            ("single starts, 32 clients", &self.single_starts_per_s, "runs/s"),
            ("durable step completions", &self.durable_completions_per_s, "/s"),
            ("batch starts of 1,000", &self.batch_runs_per_s, "runs/s"),
            ("40-step chain end to end", &self.chain_40_ms, "ms"),
            ("the chain, every step throttled", &self.throttled_chain_40_ms, "ms"),
            ("the chain, every step a cache hit", &self.cached_chain_40_ms, "ms"),
            ("2,000-item for_each end to end", &self.fan_out_2000_ms, "ms"),
            ("40-call code chain end to end", &self.code_chain_40_ms, "ms"),
        ];
        for (name, figure, unit) in lines {
            writeln!(
                f,
                "  {name:<34} {} {unit:<6} floor {:>8.1}  {:.2}x (min {:.2}, max {:.2})",
                figure.value, figure.floor.median, figure.vs_floor.median, figure.vs_floor.min, figure.vs_floor.max
            )?;
        }
        let spreads: [(&str, &Spread, &str); 7] = [
            (
                "throttle per attempt over the plain chain",
                &self.throttle_overhead_us,
                "µs",
            ),
            ("cache hit per step over its floor", &self.cache_hit_us, "µs"),
            ("cache hit, marginal (40 hits vs 1)", &self.cache_hit_marginal_us, "µs"),
            ("code chain over YAML chain (target ≤ 1.5)", &self.code_over_yaml, "x"),
            ("bundle of the 2,000-item run", &self.bundle_2000_ms, "ms"),
            (
                "durable completions, exporting traces",
                &self.traced_durable_completions_per_s,
                "/s",
            ),
            ("tracing cost on durable (target ≤ 10)", &self.tracing_cost_percent, "%"),
        ];
        for (name, spread, unit) in spreads {
            writeln!(f, "  {name:<41} {spread} {unit}")?;
        }
        unused::display(f, &self.unused_capabilities)
    }
}
