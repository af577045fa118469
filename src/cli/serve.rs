//! `sandstep serve`: the HTTP API on one SQLite file in the data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::server::{self, ServerConfig};
use crate::units::{parse_duration, parse_size};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback requires API tokens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A file of API tokens, one per line (besides SANDSTEP_API_TOKENS).
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Largest module upload, e.g. 64MiB.
    #[arg(long, value_parser = parse_size, default_value = "64MiB")]
    pub max_module_size: u64,
    /// Largest JSON or YAML body, e.g. 1MiB.
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    pub max_body_size: u64,
    /// How long running attempts may take to finish on shutdown.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub grace: std::time::Duration,
    /// Most runs one batch start (POST /v1/workflows/{name}/runs/batch) may hold.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_batch: u64,
    /// How long posted events are kept; a wait that starts looks back this
    /// far (and no further than its run's start) for one, e.g. 7d.
    #[arg(long, value_parser = parse_duration, default_value = "7d")]
    pub event_retention: std::time::Duration,
    /// How long this node holds its runs without a heartbeat (it renews
    /// every third of it): another node takes a run over once it ends.
    #[arg(long, value_parser = parse_lease, default_value = "10s")]
    pub lease: std::time::Duration,
    /// Runs this node executes at once at most; runs started beyond it are
    /// left for any node (this one too, once it has room) to claim.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_runs: u64,
    /// What workflows may grant their steps.
    #[command(flatten)]
    pub allow: super::local::Allow,
    /// The Ed25519 key (PKCS#8 PEM) this node signs run receipts with;
    /// default: signing-key.pem in the data directory, generated (mode
    /// 0600) at first start.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Accept webhooks with `signature: none`: anyone who can reach the
    /// server can then start their runs. Refused by default.
    #[arg(long)]
    pub allow_unsigned_webhooks: bool,
    /// How long an MCP tool call (POST /mcp) waits for its run before it
    /// answers the run id (the run goes on; sandstep_get_run follows it).
    #[arg(long, value_parser = parse_mcp_wait, default_value = "60s")]
    pub mcp_wait: std::time::Duration,
    /// Export OpenTelemetry traces of runs, steps and attempts to this
    /// OTLP/HTTP receiver (protobuf), e.g. http://localhost:4318 (headers
    /// from OTEL_EXPORTER_OTLP_HEADERS, service name from OTEL_SERVICE_NAME).
    /// Without it nothing is exported
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// An MCP wait of 0s to 1h.
fn parse_mcp_wait(text: &str) -> Result<std::time::Duration, String> {
    let wait = parse_duration(text)?;
    if wait > std::time::Duration::from_secs(3600) {
        return Err(format!("--mcp-wait is at most 1h, not {text}"));
    }
    Ok(wait)
}

/// A lease of 1s to 1h.
fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease = parse_duration(text)?;
    if lease < std::time::Duration::from_secs(1) || lease > std::time::Duration::from_secs(3600) {
        return Err(format!("a lease is 1s to 1h, not {text}"));
    }
    Ok(lease)
}

pub async fn run(home: &super::local::Home, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tokens = server::auth::load_tokens(
        std::env::var("SANDSTEP_API_TOKENS").ok().as_deref(),
        args.tokens_file.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    server::check_bind(&args.listen, &tokens).map_err(anyhow::Error::msg)?;
    let mut config = ServerConfig::new(home.data_dir.clone());
    config.store = home.store.clone();
    config.tokens = tokens;
    config.max_module_bytes = args.max_module_size as usize;
    config.max_body_bytes = args.max_body_size as usize;
    config.grace = args.grace;
    config.max_batch = args.max_batch as usize;
    config.event_retention = args.event_retention;
    config.lease = args.lease;
    config.max_runs = args.max_runs as usize;
    config.grants = args.allow.grants()?;
    config.grants.unsigned_webhooks = args.allow_unsigned_webhooks;
    config.signing_key = args.signing_key.clone();
    config.mcp_wait = args.mcp_wait;
    config.otlp_endpoint = args.otlp_endpoint.filter(|e| !e.trim().is_empty());
    config.secrets_key = crate::service::secrets::SecretsKey::from_env().map_err(anyhow::Error::msg)?;
    let state = server::start(&config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("sandstep listening on http://{}", listener.local_addr()?);
    server::serve(listener, state, &config, shutdown_signal()).await?;
    eprintln!("sandstep stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
