//! The floor of a `bench server` figure: the work it cannot avoid,
//! measured in the same process right after the figure. A durable step
//! must run its attempt (the bare wasmtime loop of the trivial step, as
//! `bench sandbox` times it) and commit its rows (the rows the writer
//! committed for the figure, bare, in as many group commits, into a
//! scratch database of the same schema: `store::floor`); a request over
//! HTTP must make a round trip (a bare axum handler answering JSON, with
//! as many clients at once). The floor is the sum of the three. A
//! [`Figure`] is a figure over the rounds beside its floor; [`Rounds`]
//! gathers them as they are measured.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use super::Spread;

use crate::limits::EngineSettings;
use crate::sandbox::bench_support::bare_loop;
use crate::sandbox::{Module, Sandbox};
use crate::store::floor::{Committed, Scratch};

/// What a figure did: attempts, what the writer committed, requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Work {
    pub attempts: u32,
    pub committed: Committed,
    pub requests: usize,
    /// Clients making the requests at once.
    pub clients: usize,
}

pub struct Floor {
    sandbox: Sandbox,
    module: Module,
    scratch: Scratch,
    http: reqwest::Client,
    url: String,
    served: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Floor {
    /// The trivial step from `trivial`, a scratch SQLite database in a
    /// temporary directory, and a bare axum server on 127.0.0.1:0.
    pub async fn start(trivial: &Path) -> anyhow::Result<Floor> {
        let sandbox = Sandbox::new(EngineSettings::default(), None)?;
        let bytes = std::fs::read(trivial).with_context(|| format!("cannot read {}", trivial.display()))?;
        let module = sandbox.load(&bytes)?;
        let dir = tempfile::tempdir()?;
        let location = crate::store::Location::new(dir.path(), None).map_err(anyhow::Error::msg)?;
        let db = crate::store::Db::connect(&location).await?;
        let scratch = Scratch::open(db, 1024).await?;
        let app = axum::Router::new().route(
            "/runs",
            axum::routing::post(|body: axum::Json<serde_json::Value>| async move {
                axum::Json(serde_json::json!({ "id": "01a24e6f-2dc9-72a7-9c27-1faa81494daf", "status": "completed", "output": body.0 }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/runs", listener.local_addr()?);
        let served = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let floor = Floor {
            sandbox,
            module,
            scratch,
            http: reqwest::Client::new(),
            url,
            served,
            _dir: dir,
        };
        bare_loop(&floor.sandbox, &floor.module, "{}", 200)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(floor)
    }

    /// How long `work` takes done bare, one part after the other.
    pub async fn of(&mut self, work: Work) -> anyhow::Result<Duration> {
        let attempts = if work.attempts == 0 {
            Duration::ZERO
        } else {
            bare_loop(&self.sandbox, &self.module, "{}", work.attempts)
                .await
                .map_err(anyhow::Error::msg)?
        };
        let commits = self.scratch.commit(work.committed).await?;
        let requests = self.requests(work.requests, work.clients.max(1)).await?;
        Ok(attempts + commits + requests)
    }

    /// `requests` POSTs to the bare server from `clients` clients at once.
    async fn requests(&self, requests: usize, clients: usize) -> anyhow::Result<Duration> {
        if requests == 0 {
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(clients);
        for client in 0..clients {
            let (http, url) = (self.http.clone(), self.url.clone());
            let mine = (client..requests).step_by(clients).count();
            tasks.push(tokio::spawn(async move {
                for _ in 0..mine {
                    let answer = http.post(&url).json(&serde_json::json!({})).send().await?;
                    anyhow::ensure!(answer.status() == 200, "the bare server answered {}", answer.status());
                    answer.bytes().await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(started.elapsed())
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.served.abort();
    }
}

/// A figure over the rounds, its floor and their ratio (≥ 1: how many
/// times the floor's time the figure takes).
#[derive(Debug, Serialize)]
pub struct Figure {
    pub value: Spread,
    pub floor: Spread,
    pub vs_floor: Spread,
}

/// The rounds' figures as measured, then reported.
#[derive(Default)]
pub(super) struct Rounds {
    values: Vec<f64>,
    floors: Vec<f64>,
}

impl Rounds {
    /// A rate: `units` done in `took`, the floor's units in `floor`.
    pub(super) fn rate(&mut self, units: usize, took: Duration, floor: Duration) {
        self.values.push(units as f64 / took.as_secs_f64());
        self.floors.push(units as f64 / floor.as_secs_f64());
    }

    /// A time in ms.
    pub(super) fn ms(&mut self, took: Duration, floor: Duration) {
        self.values.push(took.as_secs_f64() * 1e3);
        self.floors.push(floor.as_secs_f64() * 1e3);
    }

    pub(super) fn last(&self) -> f64 {
        self.values[self.values.len() - 1]
    }

    /// `rate`: a higher value is better (the ratio is floor over value).
    pub(super) fn figure(&self, rate: bool) -> Figure {
        let ratios: Vec<f64> = self
            .values
            .iter()
            .zip(&self.floors)
            .map(|(v, f)| if rate { f / v } else { v / f })
            .collect();
        Figure {
            value: Spread::of(&self.values),
            floor: Spread::of(&self.floors),
            vs_floor: Spread::of(&ratios),
        }
    }
}
