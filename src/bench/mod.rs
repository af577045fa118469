//! Benchmarks behind `sandstep bench`. Each prints its figures next to a
//! baseline measured in the same process, so ratios hold across machines.

pub mod cluster;
pub mod floor;
pub mod http;
pub mod sandbox;
pub mod server;
pub mod unused;
pub mod waits;
pub mod workflow;

/// The step context of every benchmark attempt.
pub(crate) fn bench_context() -> crate::sandbox::StepContext {
    crate::sandbox::StepContext {
        run_id: "bench".into(),
        step_id: "bench".into(),
        attempt: 1,
        idempotency_key: "bench".into(),
        traceparent: None,
    }
}

/// A sequential chain of `steps` trivial `echo` steps, each reading the
/// previous one's output through a template.
pub(crate) fn chain_yaml(steps: usize) -> String {
    let mut yaml = String::from("name: chain\nsteps:\n  - { id: s0, module: echo, input: { n: 0 } }\n");
    for i in 1..steps {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, module: echo, input: {{ n: \"{{{{ steps.s{}.output.n + 1 }}}}\" }} }}\n",
            i - 1
        ));
    }
    yaml.push_str(&format!("output: \"{{{{ steps.s{}.output.n }}}}\"\n", steps - 1));
    yaml
}

/// A step that lists `items` objects (`echo` of a literal list), then a
/// `for_each` with concurrency 64 of a trivial step over that list.
pub(crate) fn fan_out_yaml(items: usize) -> String {
    let list: Vec<String> = (0..items).map(|i| format!("{{i: {i}}}")).collect();
    format!(
        "name: fan\nconcurrency: 64\nsteps:\n  - id: list\n    module: echo\n    input: {{ items: [{}] }}\n  - id: each\n    module: echo\n    for_each: \"{{{{ steps.list.output.items }}}}\"\n    concurrency: 64\n    input: {{ i: \"{{{{ item.i }}}}\" }}\noutput: \"{{{{ steps.each.output | length }}}}\"\n",
        list.join(", ")
    )
}

/// A real server on 127.0.0.1:0 (SQLite in a temporary directory) with
/// `echo` pushed from `trivial` and `workflows` applied, for the benchmarks
/// that go through HTTP.
pub(crate) struct BenchServer {
    pub base: String,
    pub http: reqwest::Client,
    pub service: std::sync::Arc<crate::service::Service>,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Pushes `module` as `echo` to the server at `base` and applies
/// `workflows`.
pub(crate) async fn push_and_apply(
    http: &reqwest::Client,
    base: &str,
    module: Vec<u8>,
    workflows: &[(&str, String)],
) -> anyhow::Result<()> {
    push(http, base, "echo", module).await?;
    apply(http, base, workflows).await
}

/// Pushes `module` to the server at `base` as `name`.
pub(crate) async fn push(http: &reqwest::Client, base: &str, name: &str, module: Vec<u8>) -> anyhow::Result<()> {
    let pushed = http
        .post(format!("{base}/v1/modules?name={name}"))
        .header("content-type", "application/wasm")
        .body(module)
        .send()
        .await?;
    anyhow::ensure!(
        pushed.status().is_success(),
        "module push failed: {}",
        pushed.text().await?
    );
    Ok(())
}

/// Applies `workflows` to the server at `base`.
pub(crate) async fn apply(http: &reqwest::Client, base: &str, workflows: &[(&str, String)]) -> anyhow::Result<()> {
    use anyhow::ensure;
    for (name, yaml) in workflows {
        let applied = http
            .put(format!("{base}/v1/workflows/{name}"))
            .header("content-type", "application/yaml")
            .body(yaml.clone())
            .send()
            .await?;
        ensure!(
            applied.status().is_success(),
            "workflow apply failed: {}",
            applied.text().await?
        );
    }
    Ok(())
}

/// The benchmarks' workflow code (guest-examples/rust/chain-flow): `{"n"}`
/// calls of `echo` one after the other, then, with `"topic"`, a wait.
pub(crate) const CODE_MODULE: &str = "chain-flow";

/// A code workflow running `CODE_MODULE`.
pub(crate) fn code_yaml(name: &str) -> String {
    format!("name: {name}\ncode: {CODE_MODULE}\nworkflow_limits: {{ calls: 2000 }}\n")
}

impl BenchServer {
    /// A server with `echo` from `trivial`, the workflow code `code` as
    /// `CODE_MODULE`, and `workflows` applied.
    pub async fn start(
        trivial: &std::path::Path,
        code: &std::path::Path,
        workflows: &[(&str, String)],
    ) -> anyhow::Result<BenchServer> {
        Self::start_traced(trivial, code, workflows, None).await
    }

    /// The same, exporting traces to `otlp` when given.
    pub async fn start_traced(
        trivial: &std::path::Path,
        code: &std::path::Path,
        workflows: &[(&str, String)],
        otlp: Option<String>,
    ) -> anyhow::Result<BenchServer> {
        use anyhow::Context as _;
        let dir = tempfile::tempdir()?;
        let mut config = crate::server::ServerConfig::new(dir.path().to_path_buf());
        config.otlp_endpoint = otlp;
        config
            .grants
            .allow_http(unused::GRANTED_HOST)
            .map_err(anyhow::Error::msg)?;
        let state = crate::server::start(&config).await?;
        let service = state.service.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let _ = crate::server::serve(listener, state, &config, async move {
                let _ = stopped.await;
            })
            .await;
        });
        let http = reqwest::Client::new();
        for (name, path) in [("echo", trivial), (CODE_MODULE, code)] {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            push(&http, &base, name, bytes).await?;
        }
        apply(&http, &base, workflows).await?;
        Ok(BenchServer {
            base,
            http,
            service,
            stop,
            served,
            _dir: dir,
        })
    }

    /// Stops the server (up to 10 s for it to drain).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.served).await;
    }
}

/// A bare OTLP/HTTP receiver on 127.0.0.1 that takes every export and
/// answers an empty (valid) response: the traced figures' destination.
pub(crate) async fn otlp_sink() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(|_body: axum::body::Bytes| async { [("content-type", "application/x-protobuf")] }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// The median, min and max of a figure over rounds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let precision = if self.median >= 100.0 { 0 } else { 1 };
        write!(
            f,
            "{:8.p$}  (min {:.p$}, max {:.p$})",
            self.median,
            self.min,
            self.max,
            p = precision
        )
    }
}
