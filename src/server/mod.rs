//! The HTTP server (`sandstep serve`): the API under /v1 (`api`, `events`
//! for SSE), problem+json errors (`error`), bearer tokens (`auth`),
//! `/healthz`, `/metrics` and the OpenAPI document (`ops`), secrets
//! (`secrets`), the step result cache (`cache`), usage per token (`usage`),
//! the runs list (`runs`), webhooks at `/hooks` (`hooks`), and the web UI
//! at `/ui` (`ui`).
//! Handlers only parse and translate: the run lifecycle is [`crate::service`].

pub mod api;
pub mod auth;
pub mod bundle;
pub mod cache;
pub mod error;
pub mod events;
pub mod hooks;
pub mod mcp;
pub mod nodes;
pub mod ops;
mod page;
pub mod posted;
pub mod receipt;
pub mod rerun;
pub mod runs;
pub mod secrets;
pub mod ui;
pub mod upgrade;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::limits::{Caps, EngineSettings};
use crate::run::{Executor, Secrets};
use crate::sandbox::Sandbox;
use crate::service::{owner, Service, ServiceConfig};
use crate::store::Db;

/// The receipt key generated into the data directory (mode 0600).
pub const SIGNING_KEY_FILE: &str = "signing-key.pem";

/// What `sandstep serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// The store: the data directory's SQLite file unless `--database`.
    pub store: crate::store::Location,
    /// API tokens (`--tokens-file`, `SANDSTEP_API_TOKENS`); none: no auth.
    pub tokens: Vec<auth::ApiToken>,
    /// Largest module upload, in bytes. Default 64 MiB.
    pub max_module_bytes: usize,
    /// Largest JSON or YAML body, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// How long running attempts may take to finish on shutdown. Default 10 s.
    pub grace: Duration,
    /// Attempts running at once in this process. Default 256.
    pub max_concurrent_attempts: usize,
    /// Runs one batch start may hold (`--max-batch`). Default 1,000.
    pub max_batch: usize,
    /// Largest batch start body, in bytes. Default 16 MiB.
    pub max_batch_bytes: usize,
    /// How long this node's hold on a run lasts without a heartbeat. Default 10 s.
    pub lease: Duration,
    /// Runs this node executes at once at most (`--max-runs`). Default 10,000.
    pub max_runs: usize,
    /// How long posted events are kept (`--event-retention`). Default 7 days.
    pub event_retention: Duration,
    /// Seals secrets set through the API (`SANDSTEP_SECRETS_KEY`).
    pub secrets_key: Option<crate::service::secrets::SecretsKey>,
    /// What workflows may grant (`--allow-http`, `--allow-read`).
    pub grants: crate::grants::ServerGrants,
    /// This node's receipt key (`--signing-key`, a PKCS#8 PEM file);
    /// without it, `signing-key.pem` in the data directory, generated at
    /// first start.
    pub signing_key: Option<PathBuf>,
    /// How long an MCP tool call waits for its run (`--mcp-wait`). Default 60 s.
    pub mcp_wait: Duration,
    /// Where runs' spans go (`--otlp-endpoint`, an OTLP/HTTP base URL);
    /// none: no traces.
    pub otlp_endpoint: Option<String>,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            store: crate::store::Location::File(data_dir.join(crate::store::DB_FILE)),
            data_dir,
            tokens: Vec::new(),
            max_module_bytes: 64 << 20,
            max_body_bytes: crate::nesting::MAX_DOCUMENT_BYTES,
            grace: Duration::from_secs(10),
            max_concurrent_attempts: 256,
            max_batch: 1000,
            max_batch_bytes: 16 << 20,
            lease: Duration::from_secs(10),
            max_runs: 10_000,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            secrets_key: None,
            grants: Default::default(),
            signing_key: None,
            mcp_wait: Duration::from_secs(60),
            otlp_endpoint: None,
        }
    }
}

pub struct AppState {
    pub service: Arc<Service>,
    pub tokens: Vec<auth::ApiToken>,
    /// Fired when shutdown begins: event streams end so the server can stop.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Refuses to expose the API beyond this machine without tokens.
pub fn check_bind<T>(addr: &SocketAddr, tokens: &[T]) -> Result<(), String> {
    if !addr.ip().is_loopback() && tokens.is_empty() {
        return Err(format!(
            "refusing to listen on {addr} without API tokens: set SANDSTEP_API_TOKENS or --tokens-file, or listen on 127.0.0.1"
        ));
    }
    Ok(())
}

/// Opens the store, builds the engine and resumes unfinished runs.
pub async fn start(config: &ServerConfig) -> anyhow::Result<Arc<AppState>> {
    // A bad endpoint stops the server before it opens anything.
    let tracer = match &config.otlp_endpoint {
        Some(endpoint) => Some(crate::telemetry::Tracer::start(
            crate::telemetry::export::exporter(endpoint).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let db = Db::connect(&config.store).await?;
    let settings = EngineSettings {
        max_module_bytes: config.max_module_bytes as u64,
        ..EngineSettings::default()
    };
    let sandbox = Arc::new(Sandbox::new(settings, Some(&config.data_dir.join("cache")))?);
    let caps = Caps {
        grants: config.grants.clone(),
        ..Caps::default()
    };
    let cache = Arc::new(crate::service::cache::StoreCache::new(db.clone()));
    let node = owner::node_id(&config.data_dir)?;
    let signing = match &config.signing_key {
        Some(path) => crate::signing::SigningKey::load(path)?,
        None => crate::signing::SigningKey::load_or_generate(&config.data_dir.join(SIGNING_KEY_FILE))?,
    };
    db.put_node_key(&node, &signing.keyid, &hex::encode(signing.public))
        .await?;
    let writer = crate::store::writer::Writer::start(db.clone(), &node);
    let throttle = Arc::new(crate::service::throttle::StoreThrottle::new(writer.clone(), db.clone()));
    let executor = Executor::new(sandbox, config.max_concurrent_attempts, caps)
        .with_cache(cache)
        .with_throttle(throttle)
        .with_node(&node)
        .with_tracing(tracer.is_some());
    let service = Service::new(
        db,
        writer,
        Arc::new(executor),
        Arc::new(Secrets::from_env()),
        ServiceConfig {
            node,
            lease: config.lease,
            max_batch: config.max_batch,
            event_retention: config.event_retention,
            secrets_key: config.secrets_key.clone(),
            max_runs: config.max_runs,
            signing: Arc::new(signing),
            tracer,
        },
    );
    let opened = service
        .load_secrets()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the stored secrets: {e}"))?;
    if opened > 0 {
        tracing::info!(secrets = opened, "opened stored secrets");
    }
    let resumed = service
        .recover()
        .await
        .map_err(|e| anyhow::anyhow!("cannot resume runs: {e}"))?;
    if resumed > 0 {
        tracing::info!(runs = resumed, "resumed unfinished runs");
    }
    Ok(Arc::new(AppState {
        service,
        tokens: config.tokens.clone(),
        shutdown: Default::default(),
    }))
}

pub fn router(state: Arc<AppState>, config: &ServerConfig) -> Router {
    let modules = Router::new()
        .route("/v1/modules", post(api::upload_module).get(api::list_modules))
        .layer(DefaultBodyLimit::max(config.max_module_bytes));
    let batches = Router::new()
        .route("/v1/workflows/{name}/runs/batch", post(api::start_batch))
        .layer(DefaultBodyLimit::max(config.max_batch_bytes.max(config.max_body_bytes)));
    let v1 = Router::new()
        .route("/v1/modules/{name}", get(api::get_module).delete(api::delete_module))
        .route("/v1/workflows", get(api::list_workflows))
        .route("/v1/workflows/{name}", get(api::get_workflow).put(api::put_workflow))
        .route("/v1/workflows/{name}/runs", post(api::start_run))
        .route("/v1/runs", get(runs::list_runs))
        .route("/v1/runs/{id}", get(api::get_run))
        .route("/v1/runs/{id}/events", get(events::run_events))
        .route("/v1/runs/{id}/cancel", post(api::cancel_run))
        .route("/v1/runs/{id}/rerun", post(rerun::rerun_run))
        .route("/v1/runs/{id}/upgrade", post(upgrade::upgrade_run))
        .route("/v1/runs/{id}/bundle", get(bundle::run_bundle))
        .route("/v1/runs/{id}/receipt", get(receipt::run_receipt))
        .route("/v1/runs/{id}/verify", get(receipt::verify_run))
        .route("/v1/keys", get(receipt::list_keys))
        .route("/v1/workflows/{name}/check", post(upgrade::check_workflow))
        .route("/v1/events", post(posted::post_event).get(posted::list_events))
        .route("/v1/schedules", get(posted::list_schedules))
        .route("/v1/hooks", get(hooks::list_hooks))
        .route("/v1/cache", delete(cache::clear_cache))
        .route("/v1/usage", get(usage::get_usage))
        .route("/v1/nodes", get(nodes::list_nodes))
        .route("/v1/secrets", get(secrets::list_secrets))
        .route(
            "/v1/secrets/{name}",
            put(secrets::put_secret).delete(secrets::delete_secret),
        )
        .route("/v1/openapi.json", get(ops::openapi))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .merge(modules)
        .merge(batches)
        .nest_service(
            "/mcp",
            mcp::service(
                state.service.clone(),
                config.mcp_wait,
                config.max_body_bytes,
                !state.tokens.is_empty(),
                state.shutdown.clone(),
            ),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/", get(ui::root))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        // The signature is a hook's authentication, not a bearer token.
        .route(
            "/hooks/{name}",
            post(hooks::deliver).layer(DefaultBodyLimit::max(config.max_body_bytes)),
        )
        .merge(v1)
        .fallback(|| async { error::ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting, lets running
/// attempts finish within the grace period and leaves the rest resumable.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone(), config);
    let listen = listener.local_addr()?.to_string();
    if let Err(error) = state.service.announce(&listen).await {
        tracing::error!(%error, "cannot record this node in the store");
    }
    let stop = state.shutdown.clone();
    let stopping = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.cancel();
    });
    let server_stop = stop.clone();
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { server_stop.cancelled().await });
    // Drain as soon as shutdown begins, while open streams close.
    let service = state.service.clone();
    let grace = config.grace;
    let drained = tokio::spawn(async move {
        stop.cancelled().await;
        service.drain(grace).await;
        if let Some(tracer) = &service.config().tracer {
            tracer.flush().await;
        }
    });
    served.await?;
    let _ = drained.await;
    Ok(())
}
