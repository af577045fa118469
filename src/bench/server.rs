//! `sandstep bench server`: the durable path through the real HTTP server
//! on 127.0.0.1 (SQLite in a temporary directory, every event committed
//! before dependents start): 1-step runs per second over HTTP, durable step
//! completions per second, and a 40-step chain end to end.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use serde::Serialize;
use serde_json::{json, Value};

use crate::server::{self, ServerConfig};

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub one_step_runs: usize,
    pub one_step_runs_per_s: f64,
    pub chain_runs: usize,
    pub durable_completions: usize,
    pub durable_completions_per_s: f64,
    /// Median of several single 40-step runs, POST to completed answer.
    pub chain_40_ms: f64,
}

const CLIENTS: usize = 16;

pub async fn run(trivial: &Path) -> anyhow::Result<ServerReport> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(dir.path().to_path_buf());
    let state = server::start(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve_config = config.clone();
    let served = tokio::spawn(async move {
        let _ = server::serve(listener, state, &serve_config, async move {
            let _ = stopped.await;
        })
        .await;
    });
    let http = reqwest::Client::new();

    let bytes = std::fs::read(trivial).with_context(|| format!("cannot read {}", trivial.display()))?;
    let pushed = http
        .post(format!("{base}/v1/modules?name=echo"))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await?;
    ensure!(
        pushed.status().is_success(),
        "module push failed: {}",
        pushed.text().await?
    );
    let chain = super::chain_yaml(40);
    for (name, yaml) in [
        (
            "one",
            "name: one\nsteps:\n  - { id: s, module: echo, input: { x: 1 } }\n".to_string(),
        ),
        ("chain", chain),
    ] {
        let applied = http
            .put(format!("{base}/v1/workflows/{name}"))
            .header("content-type", "application/yaml")
            .body(yaml)
            .send()
            .await?;
        ensure!(
            applied.status().is_success(),
            "workflow apply failed: {}",
            applied.text().await?
        );
    }

    let start_run = |http: reqwest::Client, url: String| async move {
        let run: Value = http.post(url).json(&json!({})).send().await?.json().await?;
        ensure!(run["status"] == "completed", "a run did not complete: {run}");
        anyhow::Ok(())
    };

    // Warm up, then 1-step runs from CLIENTS concurrent clients.
    for _ in 0..50 {
        start_run(http.clone(), format!("{base}/v1/workflows/one/runs?wait=30s")).await?;
    }
    let one_step_runs = 2000;
    let started = Instant::now();
    let per_client = one_step_runs / CLIENTS;
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
    let one_step_runs_per_s = (per_client * CLIENTS) as f64 / started.elapsed().as_secs_f64();

    // Durable step completions: many 40-step chains at once, each step
    // committed before the next one starts.
    let chain_runs = 256;
    let started = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..chain_runs {
        let (http, url) = (http.clone(), format!("{base}/v1/workflows/chain/runs?wait=60s"));
        runs.push(tokio::spawn(start_run(http, url)));
    }
    for run in runs {
        run.await??;
    }
    let durable_completions = chain_runs * 40;
    let durable_completions_per_s = durable_completions as f64 / started.elapsed().as_secs_f64();

    // One 40-step chain at a time, end to end.
    let mut times = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        start_run(http.clone(), format!("{base}/v1/workflows/chain/runs?wait=30s")).await?;
        times.push(started.elapsed());
    }
    times.sort();
    let chain_40_ms = times[times.len() / 2].as_secs_f64() * 1e3;

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
    Ok(ServerReport {
        one_step_runs: per_client * CLIENTS,
        one_step_runs_per_s,
        chain_runs,
        durable_completions,
        durable_completions_per_s,
        chain_40_ms,
    })
}

impl std::fmt::Display for ServerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "server: real HTTP on 127.0.0.1, SQLite (WAL, fsync per group commit), trivial step echo"
        )?;
        writeln!(
            f,
            "  1-step runs over HTTP ({CLIENTS} clients, ?wait)      {:8.0} runs/s   ({} runs)",
            self.one_step_runs_per_s, self.one_step_runs
        )?;
        writeln!(
            f,
            "  durable step completions ({} 40-step runs)     {:8.0} /s       ({} steps)",
            self.chain_runs, self.durable_completions_per_s, self.durable_completions
        )?;
        writeln!(
            f,
            "  40-step chain end to end (median of 11)        {:8.1} ms",
            self.chain_40_ms
        )?;
        Ok(())
    }
}
