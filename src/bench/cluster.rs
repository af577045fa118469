//! `sandstep bench cluster --nodes N --database URL`: durable step
//! completions per second through N `sandstep serve` processes sharing one
//! PostgreSQL database, against one node on the same database measured in
//! the same run: completions per node, the CPU seconds of the sandstep
//! processes and of PostgreSQL (every `postgres` process of this machine),
//! and completions per sandstep CPU-second.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _};
use serde::Serialize;
use serde_json::{json, Value};

use super::Spread;

const ROUNDS: usize = 5;
/// 40-step chains per round, started through the nodes in turn.
const CHAINS: usize = 256;
const STEPS: usize = 40;

#[derive(Debug, Serialize)]
pub struct ClusterReport {
    pub rounds: usize,
    pub completions_per_round: usize,
    pub one: Measured,
    pub nodes: usize,
    pub many: Measured,
    /// `many`'s completions per sandstep CPU-second over `one`'s.
    pub efficiency_ratio: f64,
    /// The least and most completions of one node, as a share of the mean.
    pub spread_low: f64,
    pub spread_high: f64,
}

#[derive(Debug, Serialize)]
pub struct Measured {
    pub completions_per_s: Spread,
    /// Step completions per node over every round, by node.
    pub per_node: Vec<u64>,
    pub sandstep_cpu_s: f64,
    pub postgres_cpu_s: f64,
    pub completions_per_sandstep_cpu_s: f64,
    /// PostgreSQL's own counts for the database (`pg_stat_database`), per
    /// step completion: commits, and rows inserted, updated and deleted.
    pub commits_per_completion: f64,
    pub rows_per_completion: f64,
}

/// Commits and rows written in the database so far.
async fn database_counts(database: &crate::store::stats::DatabaseStats) -> anyhow::Result<(i64, i64)> {
    // Backends report their counts about once a second.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    Ok(database.counts().await?)
}

pub async fn run(database: &str, nodes: usize, trivial: &Path) -> anyhow::Result<ClusterReport> {
    ensure!((1..=16).contains(&nodes), "--nodes is 1 to 16, not {nodes}");
    let bytes = std::fs::read(trivial).with_context(|| format!("cannot read {}", trivial.display()))?;
    let one = measure(database, 1, &bytes).await?;
    let many = measure(database, nodes, &bytes).await?;
    let mean = many.per_node.iter().sum::<u64>() as f64 / nodes as f64;
    let low = *many.per_node.iter().min().unwrap_or(&0) as f64 / mean;
    let high = *many.per_node.iter().max().unwrap_or(&0) as f64 / mean;
    Ok(ClusterReport {
        rounds: ROUNDS,
        completions_per_round: CHAINS * STEPS,
        efficiency_ratio: many.completions_per_sandstep_cpu_s / one.completions_per_sandstep_cpu_s,
        one,
        nodes,
        many,
        spread_low: low,
        spread_high: high,
    })
}

/// `nodes` servers on `database`, the chains started through them in turn.
async fn measure(database: &str, nodes: usize, module: &[u8]) -> anyhow::Result<Measured> {
    let servers: Vec<Node> = (0..nodes).map(|_| Node::start(database)).collect::<Result<_, _>>()?;
    let http = reqwest::Client::new();
    let first = &servers[0].base;
    super::push_and_apply(&http, first, module.to_vec(), &[("chain", super::chain_yaml(STEPS))]).await?;
    // Warm up every node (compiled code, connections).
    round(&http, &servers, 16).await?;
    let stats = crate::store::stats::DatabaseStats::connect(database).await?;
    let counts_before = database_counts(&stats).await?;
    let before: Vec<u64> = attempts(&http, &servers).await?;
    let (cpu_before, pg_before) = (cpu(servers.iter().map(|s| s.child.id())), postgres_cpu());
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        round(&http, &servers, CHAINS).await?;
        rates.push((CHAINS * STEPS) as f64 / started.elapsed().as_secs_f64());
    }
    let (cpu_after, pg_after) = (cpu(servers.iter().map(|s| s.child.id())), postgres_cpu());
    let after = attempts(&http, &servers).await?;
    let counts_after = database_counts(&stats).await?;
    let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let sandstep_cpu_s = cpu_after - cpu_before;
    let total: u64 = per_node.iter().sum();
    for server in servers {
        server.stop();
    }
    let completions = (ROUNDS * CHAINS * STEPS) as f64;
    Ok(Measured {
        commits_per_completion: (counts_after.0 - counts_before.0) as f64 / completions,
        rows_per_completion: (counts_after.1 - counts_before.1) as f64 / completions,
        completions_per_s: Spread::of(&rates),
        completions_per_sandstep_cpu_s: total as f64 / sandstep_cpu_s,
        per_node,
        sandstep_cpu_s,
        postgres_cpu_s: pg_after - pg_before,
    })
}

/// `chains` 40-step runs started through the nodes in turn, each answered
/// once completed.
async fn round(http: &reqwest::Client, servers: &[Node], chains: usize) -> anyhow::Result<()> {
    let mut runs = Vec::with_capacity(chains);
    for i in 0..chains {
        let url = format!("{}/v1/workflows/chain/runs?wait=120s", servers[i % servers.len()].base);
        let http = http.clone();
        runs.push(tokio::spawn(async move {
            let run: Value = http.post(url).json(&json!({})).send().await?.json().await?;
            ensure!(run["status"] == "completed", "a run did not complete: {run}");
            anyhow::Ok(())
        }));
    }
    for run in runs {
        run.await??;
    }
    Ok(())
}

/// Successful attempts so far, per node (`sandstep_attempts_total`).
async fn attempts(http: &reqwest::Client, servers: &[Node]) -> anyhow::Result<Vec<u64>> {
    let mut counts = Vec::with_capacity(servers.len());
    for server in servers {
        let text = http
            .get(format!("{}/metrics", server.base))
            .send()
            .await?
            .text()
            .await?;
        let count: f64 = text
            .lines()
            .filter(|l| l.starts_with("sandstep_attempts_total{") && l.contains("succeeded"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        counts.push(count as u64);
    }
    Ok(counts)
}

/// User and system CPU seconds of processes, from `/proc/PID/stat`.
fn cpu(pids: impl Iterator<Item = u32>) -> f64 {
    pids.map(|pid| process_cpu(&format!("/proc/{pid}/stat")).unwrap_or(0.0))
        .sum()
}

/// CPU seconds of every `postgres` process of this machine.
fn postgres_cpu() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| {
            let stat = e.path().join("stat");
            let text = std::fs::read_to_string(&stat).ok()?;
            text.contains("(postgres)")
                .then(|| process_cpu(&stat.to_string_lossy()))
                .flatten()
        })
        .sum()
}

fn process_cpu(stat: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// One `sandstep serve` process on `database`, in a data directory of its own.
struct Node {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(database: &str) -> anyhow::Result<Node> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("SANDSTEP_DATABASE_URL", database)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start sandstep serve")?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("sandstep listening on ") {
                        break url.to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    bail!("sandstep serve stopped before listening");
                }
            }
        };
        // The node's warnings and errors reach the bench's stderr.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("node: {line}");
                }
            }
        });
        Ok(Node { child, base, _dir: dir })
    }

    /// SIGTERM, then waits for the process: its runs are released.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    /// A bench that fails leaves no server behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl std::fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sandstep bench cluster: {} rounds of {} 40-step chains ({} durable step completions), median (min, max)",
            self.rounds, CHAINS, self.completions_per_round
        )?;
        for (label, m) in [("1 node", &self.one), (&*format!("{} nodes", self.nodes), &self.many)] {
            writeln!(f, "  {label:>8}: durable step completions {} /s", m.completions_per_s)?;
            writeln!(
                f,
                "            per node {:?}; CPU s: sandstep {:.1}, postgres {:.1}; {:.0} completions per sandstep CPU-second",
                m.per_node, m.sandstep_cpu_s, m.postgres_cpu_s, m.completions_per_sandstep_cpu_s
            )?;
            writeln!(
                f,
                "            per completion: {:.3} commits, {:.2} rows written",
                m.commits_per_completion, m.rows_per_completion
            )?;
        }
        writeln!(
            f,
            "  {} nodes vs 1: {:.2}x completions per sandstep CPU-second; work per node {:.0}% to {:.0}% of the mean",
            self.nodes,
            self.efficiency_ratio,
            self.spread_low * 100.0,
            self.spread_high * 100.0
        )
    }
}
