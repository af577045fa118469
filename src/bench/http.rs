//! The HTTP line of `sandstep bench sandbox`: a step making one GET to a
//! local server (`rust/fetch-json.wasm`, wstd over wasi:http, granted that
//! host), per attempt, against the same GET from the host process on a
//! fresh connection each time, in alternating rounds.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::grants::HostPattern;
use crate::limits::Limits;
use crate::sandbox::{Access, AttemptRequest, Module, Sandbox};

const ROUNDS: usize = 5;
const PER_ROUND: u32 = 200;

#[derive(Debug, Serialize)]
pub struct HttpReport {
    pub module: String,
    pub rounds: usize,
    pub per_round: u32,
    /// µs per attempt, per round: median, min, max.
    pub step_us: [f64; 3],
    /// µs per host GET on a fresh connection, per round: median, min, max.
    pub host_us: [f64; 3],
    /// step over host, per round: median, min, max.
    pub ratio: [f64; 3],
}

/// Median, min and max.
fn spread(mut values: Vec<f64>) -> [f64; 3] {
    values.sort_by(|a, b| a.total_cmp(b));
    [values[values.len() / 2], values[0], values[values.len() - 1]]
}

pub async fn run(sandbox: &Sandbox, module: &Module, name: &str) -> anyhow::Result<HttpReport> {
    let app = axum::Router::new().route(
        "/json",
        axum::routing::get(|| async { axum::Json(serde_json::json!({ "id": 7, "name": "Ada" })) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{address}/json");
    let access = Access {
        http: vec![HostPattern::parse(&address.to_string()).map_err(anyhow::Error::msg)?],
        ..Access::default()
    };
    let input = serde_json::json!({ "url": url }).to_string();
    let limits = Limits::default();
    let context = super::bench_context();
    let request = AttemptRequest {
        input: &input,
        args: &[],
        context: &context,
        limits: &limits,
        access: &access,
    };
    let host = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;

    let step = || async {
        let attempt = sandbox.run(module, request).await;
        anyhow::ensure!(attempt.output().is_some(), "the step failed: {:?}", attempt.failure());
        Ok(())
    };
    let get = || async {
        let body = host.get(&url).send().await?.error_for_status()?.bytes().await?;
        anyhow::ensure!(!body.is_empty(), "empty answer");
        Ok(())
    };
    for _ in 0..20 {
        step().await.context("warm-up")?;
        get().await.context("warm-up")?;
    }
    let (mut steps, mut gets, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            step().await?;
        }
        let step_us = per(started.elapsed());
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            get().await?;
        }
        let host_us = per(started.elapsed());
        steps.push(step_us);
        gets.push(host_us);
        ratios.push(step_us / host_us);
    }
    server.abort();
    Ok(HttpReport {
        module: name.to_string(),
        rounds: ROUNDS,
        per_round: PER_ROUND,
        step_us: spread(steps),
        host_us: spread(gets),
        ratio: spread(ratios),
    })
}

fn per(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / f64::from(PER_ROUND)
}

impl std::fmt::Display for HttpReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [m, lo, hi] = self.step_us;
        writeln!(
            f,
            "http: {} GETs a local server, {} rounds of {} (median [min-max])",
            self.module, self.rounds, self.per_round
        )?;
        writeln!(f, "  step over wasi:http {m:7.1} µs/attempt [{lo:.1}-{hi:.1}]")?;
        let [m, lo, hi] = self.host_us;
        writeln!(
            f,
            "  host GET           {m:7.1} µs/request [{lo:.1}-{hi:.1}]  (reqwest, fresh connection)"
        )?;
        let [m, lo, hi] = self.ratio;
        writeln!(f, "ratio: {m:.2} [{lo:.2}-{hi:.2}]")
    }
}
