//! `sandstep bench server`: the durable path through the real HTTP server
//! on 127.0.0.1 (SQLite in a temporary directory, every event committed
//! before dependents start): 1-step runs per second over HTTP, durable step
//! completions per second, and a 40-step chain end to end.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde::Serialize;
use serde_json::{json, Value};

use super::Spread;

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub rounds: usize,
    pub one_step_runs: usize,
    pub one_step_runs_per_s: Spread,
    pub chain_runs: usize,
    pub durable_completions: usize,
    pub durable_completions_per_s: Spread,
    pub batch_size: usize,
    pub batches: usize,
    /// Runs accepted per second through batch starts: each batch timed from
    /// request to answer (every run stored durably before the answer), with
    /// the previous batch's runs finished.
    pub batch_runs_per_s: Spread,
    /// Single 40-step runs, POST to completed answer.
    pub chain_40_ms: Spread,
    /// The same chain with every step under a keyed concurrency limit that
    /// never blocks (slots asked for and given back through the store).
    pub throttled_chain_40_ms: Spread,
    /// Per attempt, the throttled chain minus the plain one, each round.
    pub throttle_overhead_us: Spread,
    /// A 2,000-item for_each over a previous step's output, POST to
    /// completed answer.
    pub fan_out_2000_ms: Spread,
    /// Single runs of workflow code making 40 `echo` calls one after the
    /// other (the chain as code), POST to completed answer.
    pub code_chain_40_ms: Spread,
    /// Per round, the code chain over the YAML chain (target ≤ 1.5).
    pub code_over_yaml: Spread,
}

const CLIENTS: usize = 16;
const ROUNDS: usize = 5;

pub async fn run(trivial: &Path, code: &Path) -> anyhow::Result<ServerReport> {
    let one = "name: one\nsteps:\n  - { id: s, module: echo, input: { x: 1 } }\n".to_string();
    let workflows = [
        ("one", one),
        ("chain", super::chain_yaml(40)),
        ("fan", super::fan_out_yaml(2000)),
        (
            "tchain",
            super::chain_yaml(40).replace("name: chain", "name: tchain").replace(
                "module: echo,",
                "module: echo, throttle: { key: \"{{ run.id }}\", concurrency: 64 },",
            ),
        ),
        ("cchain", super::code_yaml("cchain")),
    ];
    let server = super::BenchServer::start(trivial, code, &workflows).await?;
    let (http, base) = (server.http.clone(), server.base.clone());

    let start_with = |http: reqwest::Client, url: String, body: Value| async move {
        let run: Value = http.post(url).json(&body).send().await?.json().await?;
        ensure!(run["status"] == "completed", "a run did not complete: {run}");
        anyhow::Ok(())
    };
    let start_run = move |http: reqwest::Client, url: String| start_with(http, url, json!({}));
    let code_body = json!({ "input": { "n": 40 } });
    for _ in 0..5 {
        start_with(
            http.clone(),
            format!("{base}/v1/workflows/cchain/runs?wait=30s"),
            code_body.clone(),
        )
        .await?;
    }

    // Warm up.
    for _ in 0..50 {
        start_run(http.clone(), format!("{base}/v1/workflows/one/runs?wait=30s")).await?;
    }
    let per_client = 2000 / CLIENTS;
    let chain_runs = 256;
    let (batch_size, batches) = (1000, 5);
    let mut one_step = Vec::new();
    let mut durable = Vec::new();
    let mut batched = Vec::new();
    let mut chain = Vec::new();
    let mut throttled = Vec::new();
    let mut overhead = Vec::new();
    let mut fan_out = Vec::new();
    let mut code_chain = Vec::new();
    let mut code_over_yaml = Vec::new();
    for _ in 0..ROUNDS {
        // 1-step runs from CLIENTS concurrent clients, each waiting for its run.
        let started = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let (http, url) = (http.clone(), format!("{base}/v1/workflows/one/runs?wait=30s"));
            clients.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    start_run(http.clone(), url.clone()).await?;
                }
                anyhow::Ok(())
            }));
        }
        for client in clients {
            client.await??;
        }
        one_step.push((per_client * CLIENTS) as f64 / started.elapsed().as_secs_f64());

        // Durable step completions: many 40-step chains at once, each step
        // committed before the next one starts.
        let started = Instant::now();
        let mut runs = Vec::new();
        for _ in 0..chain_runs {
            let (http, url) = (http.clone(), format!("{base}/v1/workflows/chain/runs?wait=60s"));
            runs.push(tokio::spawn(start_run(http, url)));
        }
        for run in runs {
            run.await??;
        }
        durable.push((chain_runs * 40) as f64 / started.elapsed().as_secs_f64());

        // Batch starts: each batch timed from request to answer (every run
        // stored durably before it), after the previous batch's runs ended,
        // so the figure is acceptance, not the execution measured above.
        let body = json!({ "runs": (0..batch_size).map(|i| json!({ "input": { "i": i } })).collect::<Vec<_>>() });
        let mut accepting = Duration::ZERO;
        for _ in 0..batches {
            idle(&http, &base).await?;
            let started = Instant::now();
            let answer = http
                .post(format!("{base}/v1/workflows/one/runs/batch"))
                .json(&body)
                .send()
                .await?;
            ensure!(answer.status() == 201, "a batch was refused: {}", answer.text().await?);
            accepting += started.elapsed();
        }
        batched.push((batch_size * batches) as f64 / accepting.as_secs_f64());
        idle(&http, &base).await?;

        // One 40-step chain and one 2,000-item fan-out at a time, end to end.
        let started = Instant::now();
        start_run(http.clone(), format!("{base}/v1/workflows/chain/runs?wait=30s")).await?;
        chain.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        start_run(http.clone(), format!("{base}/v1/workflows/tchain/runs?wait=30s")).await?;
        throttled.push(started.elapsed().as_secs_f64() * 1e3);
        overhead.push((throttled[throttled.len() - 1] - chain[chain.len() - 1]) * 1e3 / 40.0);
        let started = Instant::now();
        start_run(http.clone(), format!("{base}/v1/workflows/fan/runs?wait=30s")).await?;
        fan_out.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let url = format!("{base}/v1/workflows/cchain/runs?wait=30s");
        start_with(http.clone(), url, code_body.clone()).await?;
        code_chain.push(started.elapsed().as_secs_f64() * 1e3);
        code_over_yaml.push(code_chain[code_chain.len() - 1] / chain[chain.len() - 1]);
    }

    server.stop().await;
    Ok(ServerReport {
        rounds: ROUNDS,
        one_step_runs: per_client * CLIENTS,
        one_step_runs_per_s: Spread::of(&one_step),
        chain_runs,
        durable_completions: chain_runs * 40,
        durable_completions_per_s: Spread::of(&durable),
        batch_size,
        batches,
        batch_runs_per_s: Spread::of(&batched),
        chain_40_ms: Spread::of(&chain),
        throttled_chain_40_ms: Spread::of(&throttled),
        throttle_overhead_us: Spread::of(&overhead),
        fan_out_2000_ms: Spread::of(&fan_out),
        code_chain_40_ms: Spread::of(&code_chain),
        code_over_yaml: Spread::of(&code_over_yaml),
    })
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
            "  1-step runs over HTTP ({CLIENTS} clients, ?wait, {} a round)   {} runs/s",
            self.one_step_runs, self.one_step_runs_per_s
        )?;
        writeln!(
            f,
            "  durable step completions ({} 40-step runs a round) {} /s",
            self.chain_runs, self.durable_completions_per_s
        )?;
        writeln!(
            f,
            "  batch starts ({} batches of {} a round, each alone)  {} runs/s",
            self.batches, self.batch_size, self.batch_runs_per_s
        )?;
        writeln!(
            f,
            "  40-step chain end to end                          {} ms",
            self.chain_40_ms
        )?;
        writeln!(
            f,
            "  the same chain, every step throttled (store)      {} ms",
            self.throttled_chain_40_ms
        )?;
        writeln!(
            f,
            "  keyed concurrency limit per attempt (store)       {} µs",
            self.throttle_overhead_us
        )?;
        writeln!(
            f,
            "  2,000-item for_each end to end                    {} ms",
            self.fan_out_2000_ms
        )?;
        writeln!(
            f,
            "  40-call code chain (workflow code) end to end     {} ms",
            self.code_chain_40_ms
        )?;
        writeln!(
            f,
            "  code chain over YAML chain (target ≤ 1.5)         {} x",
            self.code_over_yaml
        )?;
        Ok(())
    }
}
