//! `sandstep bench waits`: 10,000 runs paused on waits in the real server
//! (SQLite in a temporary directory), the process's resident memory with
//! them paused, then one posted event per run over HTTP: events delivered
//! per second and the latency from each event's post to its run's end.
//! Baseline, in the same process: the same number of one-step runs started
//! in batches, completed per second.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use serde::Serialize;
use serde_json::{json, Value};

use super::Spread;

#[derive(Debug, Serialize)]
pub struct WaitsReport {
    pub rounds: usize,
    pub runs: usize,
    /// Resident memory of the process before any run, MiB.
    pub rss_before_mib: f64,
    /// Resident memory with every run of the round paused, MiB, once it
    /// settled (what the runs left behind was given back; see [`settled`]).
    pub rss_paused_mib: Spread,
    /// Of which anonymous memory (the heap; the rest is the mapped binary
    /// and database file pages, which the kernel may drop), MiB.
    pub rss_paused_anon_mib: Spread,
    /// Events posted (32 clients) until every run they resume has ended.
    pub events_per_s: Spread,
    /// From an event's post to its run's final event, per round.
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    /// The same with workflow code (wait, then one call): each revival
    /// instantiates the code and replays its journal.
    pub code_rss_paused_mib: Spread,
    pub code_rss_paused_anon_mib: Spread,
    pub code_events_per_s: Spread,
    pub code_p50_ms: Spread,
    pub code_p99_ms: Spread,
    /// Post to end, one run at a time, of code runs paused after 1,000
    /// calls, minus the same for code runs paused after none: reading the
    /// 3,005 events of 1,000 recorded calls from the store, folding them
    /// and replaying the code up to where it goes live (`bench workflow`
    /// times the replay alone).
    pub replay_1000_calls_ms: Spread,
    /// Baseline: one-step runs started in batches of 1,000, until all ended.
    pub baseline_runs_per_s: Spread,
}

impl std::fmt::Display for WaitsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "waits: {} runs paused on a wait, then one event each ({} rounds; median (min, max))",
            self.runs, self.rounds
        )?;
        writeln!(f, "  RSS before any run         {:8.0} MiB", self.rss_before_mib)?;
        writeln!(f, "  RSS, all runs paused       {} MiB", self.rss_paused_mib)?;
        writeln!(f, "    of which anonymous       {} MiB", self.rss_paused_anon_mib)?;
        writeln!(f, "  events delivered /s        {}", self.events_per_s)?;
        writeln!(f, "  post -> run ended p50 ms   {}", self.p50_ms)?;
        writeln!(f, "  post -> run ended p99 ms   {}", self.p99_ms)?;
        writeln!(f, "  workflow code, the same:")?;
        writeln!(f, "  RSS, all runs paused       {} MiB", self.code_rss_paused_mib)?;
        writeln!(f, "    of which anonymous       {} MiB", self.code_rss_paused_anon_mib)?;
        writeln!(f, "  events delivered /s        {}", self.code_events_per_s)?;
        writeln!(f, "  post -> run ended p50 ms   {}", self.code_p50_ms)?;
        writeln!(f, "  post -> run ended p99 ms   {}", self.code_p99_ms)?;
        writeln!(
            f,
            "  code revival vs YAML       {:8.2}x events/s, {:.2}x p50, {:.2}x p99 (target ≤ 2)",
            self.events_per_s.median / self.code_events_per_s.median,
            self.code_p50_ms.median / self.p50_ms.median,
            self.code_p99_ms.median / self.p99_ms.median
        )?;
        writeln!(
            f,
            "  revival, +1,000 calls ms   {} (reads 3,005 events; the replay alone: bench workflow)",
            self.replay_1000_calls_ms
        )?;
        writeln!(f, "  baseline: 1-step runs /s   {}", self.baseline_runs_per_s)?;
        writeln!(
            f,
            "  events /s vs baseline      {:8.2}x",
            self.events_per_s.median / self.baseline_runs_per_s.median
        )
    }
}

const RUNS: usize = 10_000;
const ROUNDS: usize = 5;
const CLIENTS: usize = 32;
const BATCH: usize = 1_000;
/// Runs a round for the replay figure, resumed one at a time.
const REPLAYS: usize = 10;

/// One round of paused runs resumed by events.
struct Resumed {
    rss_mib: f64,
    rss_anon_mib: f64,
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub async fn run(trivial: &Path, code: &Path) -> anyhow::Result<WaitsReport> {
    let approval = "name: approval\nsteps:\n  - id: wait\n    wait: { event: \"go.{{ inputs.key }}\", timeout: 1h }\n  - id: done\n    module: echo\n    input: \"{{ steps.wait.output }}\"\noutput: \"{{ steps.done.output }}\"\n";
    let one = "name: one\nsteps:\n  - { id: s, module: echo, input: { x: 1 } }\n";
    let workflows = [
        ("approval", approval.to_string()),
        ("one", one.to_string()),
        ("capproval", super::code_yaml("capproval")),
    ];
    let server = super::BenchServer::start(trivial, code, &workflows).await?;
    let (http, base, service) = (server.http.clone(), server.base.clone(), server.service.clone());
    let rss_before = rss().0;

    let mut yaml = Vec::new();
    let mut code = Vec::new();
    let mut replay = Vec::new();
    let mut baseline = Vec::new();
    for round in 0..ROUNDS {
        // Baseline: the same number of one-step runs, started in batches.
        let started = Instant::now();
        let mut ids = Vec::with_capacity(RUNS);
        for _ in 0..RUNS / BATCH {
            let body = json!({ "runs": (0..BATCH).map(|i| json!({ "input": { "i": i } })).collect::<Vec<_>>() });
            ids.extend(start_batch(&http, &base, "one", &body).await?);
        }
        wait_ended(&service, &ids).await?;
        baseline.push(RUNS as f64 / started.elapsed().as_secs_f64());

        // Paused runs, each waiting for its own event: YAML (wait, then a
        // step), then code (wait, then a call).
        let topic = |n: usize| format!("go.{round}.{n}");
        yaml.push(
            resume(
                &http,
                &base,
                &service,
                "approval",
                &|n| json!({ "key": format!("{round}.{n}") }),
                &topic,
            )
            .await?,
        );
        let topic = |n: usize| format!("code.{round}.{n}");
        let input = |n: usize| json!({ "n": 0, "topic": format!("code.{round}.{n}"), "after": 1 });
        code.push(resume(&http, &base, &service, "capproval", &input, &topic).await?);

        // Replay: code runs paused after 1,000 calls and after none, each
        // resumed alone.
        let latency = |calls: usize| {
            let (http, base, service) = (http.clone(), base.clone(), service.clone());
            async move {
                let mut times = Vec::new();
                for n in 0..REPLAYS {
                    let topic = format!("replay.{round}.{calls}.{n}");
                    let body = json!({ "input": { "n": calls, "topic": topic } });
                    let answer = http
                        .post(format!("{base}/v1/workflows/capproval/runs"))
                        .json(&body)
                        .send()
                        .await?;
                    ensure!(answer.status() == 201, "a start was refused: {}", answer.text().await?);
                    let id = answer.json::<Value>().await?["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    wait_status(&service, &id, "paused").await?;
                    let (mut watch, _) = service.watch(&id).await?;
                    let at = Instant::now();
                    let answer = http
                        .post(format!("{base}/v1/events"))
                        .json(&json!({ "topic": topic }))
                        .send()
                        .await?;
                    ensure!(answer.status() == 202, "an event was refused: {}", answer.text().await?);
                    tokio::time::timeout(Duration::from_secs(60), watch.ended())
                        .await
                        .context("a resumed run did not end within 60 s")?;
                    times.push(at.elapsed().as_secs_f64() * 1e3);
                }
                times.sort_by(f64::total_cmp);
                anyhow::Ok(times[times.len() / 2])
            }
        };
        let long = latency(1000).await?;
        let short = latency(0).await?;
        replay.push(long - short);
    }
    server.stop().await;
    let spread =
        |rounds: &[Resumed], figure: fn(&Resumed) -> f64| Spread::of(&rounds.iter().map(figure).collect::<Vec<_>>());
    Ok(WaitsReport {
        rounds: ROUNDS,
        runs: RUNS,
        rss_before_mib: rss_before,
        rss_paused_mib: spread(&yaml, |r| r.rss_mib),
        rss_paused_anon_mib: spread(&yaml, |r| r.rss_anon_mib),
        events_per_s: spread(&yaml, |r| r.events_per_s),
        p50_ms: spread(&yaml, |r| r.p50_ms),
        p99_ms: spread(&yaml, |r| r.p99_ms),
        code_rss_paused_mib: spread(&code, |r| r.rss_mib),
        code_rss_paused_anon_mib: spread(&code, |r| r.rss_anon_mib),
        code_events_per_s: spread(&code, |r| r.events_per_s),
        code_p50_ms: spread(&code, |r| r.p50_ms),
        code_p99_ms: spread(&code, |r| r.p99_ms),
        replay_1000_calls_ms: Spread::of(&replay),
        baseline_runs_per_s: Spread::of(&baseline),
    })
}

/// Starts `RUNS` runs of `workflow` (run `n`'s input is `input(n)`), waits
/// until all are paused, then posts one event per run (`topic(n)`) from
/// `CLIENTS` clients and times each run from its event's post to its end.
async fn resume(
    http: &reqwest::Client,
    base: &str,
    service: &Arc<crate::service::Service>,
    workflow: &str,
    input: &dyn Fn(usize) -> Value,
    topic: &dyn Fn(usize) -> String,
) -> anyhow::Result<Resumed> {
    let mut ids = Vec::with_capacity(RUNS);
    for chunk in 0..RUNS / BATCH {
        let runs: Vec<Value> = (0..BATCH)
            .map(|i| json!({ "input": input(chunk * BATCH + i) }))
            .collect();
        ids.extend(start_batch(http, base, workflow, &json!({ "runs": runs })).await?);
    }
    wait_paused(http, base, RUNS).await?;
    let (rss, rss_anon) = settled().await;

    // Each run watched from before its event is posted.
    let mut watchers = Vec::with_capacity(RUNS);
    for id in &ids {
        let (mut watch, _) = service.watch(id).await?;
        watchers.push(tokio::spawn(async move {
            watch.ended().await;
            Instant::now()
        }));
    }
    let topics: Arc<Vec<String>> = Arc::new((0..RUNS).map(topic).collect());
    let posted_at = Arc::new(std::sync::Mutex::new(vec![Instant::now(); RUNS]));
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, base, posted_at, topics) = (http.clone(), base.to_string(), posted_at.clone(), topics.clone());
        clients.push(tokio::spawn(async move {
            for n in (client..RUNS).step_by(CLIENTS) {
                let at = Instant::now();
                let body = json!({ "topic": topics[n], "data": { "n": n } });
                let answer = http.post(format!("{base}/v1/events")).json(&body).send().await?;
                ensure!(answer.status() == 202, "an event was refused: {}", answer.text().await?);
                posted_at.lock().unwrap()[n] = at;
            }
            anyhow::Ok(())
        }));
    }
    for client in clients {
        client.await??;
    }
    let mut latencies = Vec::with_capacity(RUNS);
    let mut last = started;
    let posted_at = posted_at.lock().unwrap().clone();
    for (n, watcher) in watchers.into_iter().enumerate() {
        let ended = tokio::time::timeout(Duration::from_secs(120), watcher)
            .await
            .context("a resumed run did not end within 120 s")??;
        last = last.max(ended);
        latencies.push(ended.saturating_duration_since(posted_at[n]).as_secs_f64() * 1e3);
    }
    wait_ended(service, &ids).await?;
    latencies.sort_by(f64::total_cmp);
    Ok(Resumed {
        rss_mib: rss,
        rss_anon_mib: rss_anon,
        events_per_s: RUNS as f64 / last.duration_since(started).as_secs_f64(),
        p50_ms: latencies[latencies.len() / 2],
        p99_ms: latencies[latencies.len() * 99 / 100],
    })
}

async fn wait_status(service: &Arc<crate::service::Service>, id: &str, status: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while service.run_row(id).await?.status != status {
        ensure!(Instant::now() < deadline, "run {id} was not {status} after 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn start_batch(http: &reqwest::Client, base: &str, workflow: &str, body: &Value) -> anyhow::Result<Vec<String>> {
    let answer = http
        .post(format!("{base}/v1/workflows/{workflow}/runs/batch"))
        .json(body)
        .send()
        .await?;
    ensure!(answer.status() == 201, "a batch was refused: {}", answer.text().await?);
    let answer: Value = answer.json().await?;
    Ok(answer["runs"]
        .as_array()
        .context("a batch answer lists its runs")?
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect())
}

async fn wait_ended(service: &std::sync::Arc<crate::service::Service>, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        service.wait_for_end(id, Duration::from_secs(120)).await?;
        let row = service.run_row(id).await?;
        ensure!(row.status == "completed", "run {id} ended {}", row.status);
    }
    Ok(())
}

/// Waits until `runs` runs are paused (`sandstep_runs{status="paused"}`).
async fn wait_paused(http: &reqwest::Client, base: &str, runs: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
        let paused = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sandstep_runs{status=\"paused\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if paused as usize >= runs {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "only {paused} runs paused after 300 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// This process's resident memory once it stops falling: sampled every
/// 250 ms until two samples are within 1 MiB (at most 5 s). A paused run
/// holds no task; the memory its driver used until it paused is given back
/// to the system by the allocator within about a second (mimalloc's purge
/// delay), and a figure taken before that would count runs that are gone.
/// Answers (total, anonymous), MiB.
async fn settled() -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = rss();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss();
        if (last.0 - now.0).abs() < 1.0 || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// This process's resident memory and its anonymous part, MiB (Linux
/// `/proc/self/status`).
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}
