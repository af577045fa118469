//! Client commands against a server: `module push`,
//! `runs start [--batch FILE]|get|list|watch|cancel|rerun|export`
//! (`receipt` and `verify` in `receipt`), `event send|list`,
//! `schedules list`.
//! `--server` or SANDSTEP_URL; the token from SANDSTEP_TOKEN.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::Value;

use super::{EXIT_CANCELED, EXIT_FAILED};

#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, env = "SANDSTEP_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
}

/// One page of a list: `--limit` entries after `--cursor`.
#[derive(Debug, Args, Clone)]
pub struct Page {
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Start a run of WORKFLOW (or a batch of runs with --batch).
    Start {
        workflow: String,
        /// Input JSON, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait up to this long for the run to end, e.g. 30s.
        #[arg(long)]
        wait: Option<String>,
        /// Start a batch, all or nothing: FILE holds JSON lines, one
        /// `{"input": {...}, "idempotency_key": "..."}` per run.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "idempotency_key", "wait"])]
        batch: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a run with its steps and attempts.
    Get {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List runs, newest first.
    List {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: Page,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Follow a run's events until it ends; prints its output last.
    Watch {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a run.
    Cancel {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Save a run's bundle (its events, definition, child runs and every
    /// module they used) as a zip.
    Export {
        id: String,
        /// The zip to write.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Save an ended run's signed receipt (a DSSE envelope of an in-toto statement).
    Receipt {
        id: String,
        /// The file to write.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Recompute a run's hash chain on the server; names the first broken link.
    Verify {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Re-run an ended run from a step (or from every failed step),
    /// reusing the recorded outputs of the steps before it.
    Rerun {
        id: String,
        /// Run this step and every step downstream of it again.
        #[arg(long, required_unless_present = "failed", conflicts_with = "failed")]
        from: Option<String>,
        /// Run every failed step and every step downstream of one again.
        #[arg(long)]
        failed: bool,
        /// A new input JSON (or @FILE); steps reading inputs run again.
        #[arg(long)]
        input: Option<String>,
        /// Wait up to this long for the new run to end, e.g. 30s.
        #[arg(long)]
        wait: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Post an event: every step waiting for TOPIC (whose `match` fits) resumes.
    Send {
        topic: String,
        /// The event's data, JSON (or @FILE); it becomes each resumed step's output.
        #[arg(long, default_value = "null")]
        data: String,
        /// Sending twice with the same key stores the event once.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List events, newest first, each with the runs it resumed and started.
    List {
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        page: Page,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List every schedule with its next tick and the run its last tick started.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// List every webhook with its workflow, signature scheme and last delivery.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(super) fn new(server: &ServerArgs) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server.server.trim_end_matches('/').to_string(),
            token: std::env::var("SANDSTEP_TOKEN").ok().filter(|t| !t.is_empty()),
        }
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends and returns the JSON answer, or fails with the problem's detail.
    pub(super) async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body: Value = if status == reqwest::StatusCode::NO_CONTENT {
            Value::Null
        } else {
            response.json().await.unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(body);
        }
        let detail = body.get("detail").and_then(Value::as_str).unwrap_or("request failed");
        let mut message = format!("{status}: {detail}");
        if let Some(errors) = body.get("errors").and_then(Value::as_array) {
            for e in errors {
                message.push_str(&format!(
                    "\n  {}: {}",
                    e["location"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                ));
            }
        }
        bail!(message)
    }
}

/// POSTs a request that answers a run (a start, a re-run), with `?wait`,
/// prints the run and exits as its status says.
async fn post_run(server: &ServerArgs, path: &str, body: &Value, wait: Option<&str>) -> anyhow::Result<ExitCode> {
    let client = Client::new(server);
    let mut request = client.request(reqwest::Method::POST, path).json(body);
    if let Some(wait) = wait {
        request = request.query(&[("wait", wait)]);
    }
    let run = client.send(request).await?;
    print(&run);
    Ok(exit_for(&run))
}

/// GETs `path` with the query parameters that are set and prints the answer.
async fn show(server: &ServerArgs, path: &str, query: &[(&str, Option<String>)]) -> anyhow::Result<ExitCode> {
    let client = Client::new(server);
    let query: Vec<(&str, &str)> = query
        .iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (*name, v)))
        .collect();
    print(
        &client
            .send(client.request(reqwest::Method::GET, path).query(&query))
            .await?,
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

pub async fn push(file: PathBuf, name: String, tag: String, server: ServerArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let client = Client::new(&server);
    let request = client
        .request(reqwest::Method::POST, "/v1/modules")
        .query(&[("name", name.as_str()), ("tag", tag.as_str())])
        .header("content-type", "application/wasm")
        .body(bytes);
    print(&client.send(request).await?);
    Ok(ExitCode::SUCCESS)
}

pub async fn runs(command: RunsCommand) -> anyhow::Result<ExitCode> {
    match command {
        RunsCommand::Start {
            workflow,
            batch: Some(file),
            server,
            ..
        } => {
            let runs = read_batch(&file)?;
            let client = Client::new(&server);
            let request = client
                .request(reqwest::Method::POST, &format!("/v1/workflows/{workflow}/runs/batch"))
                .json(&serde_json::json!({ "runs": runs }));
            print(&client.send(request).await?);
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Start {
            workflow,
            input,
            idempotency_key,
            wait,
            server,
            batch: None,
        } => {
            let input: Value = serde_json::from_str(&super::local::read_input(&input)?)?;
            let mut body = serde_json::json!({ "input": input });
            if let Some(key) = idempotency_key {
                body["idempotency_key"] = Value::String(key);
            }
            post_run(
                &server,
                &format!("/v1/workflows/{workflow}/runs"),
                &body,
                wait.as_deref(),
            )
            .await
        }
        RunsCommand::Get { id, server } => {
            let client = Client::new(&server);
            print(
                &client
                    .send(client.request(reqwest::Method::GET, &format!("/v1/runs/{id}")))
                    .await?,
            );
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::List {
            workflow,
            status,
            page,
            server,
        } => {
            let query = [
                ("limit", Some(page.limit.to_string())),
                ("workflow", workflow),
                ("status", status),
                ("cursor", page.cursor),
            ];
            show(&server, "/v1/runs", &query).await
        }
        RunsCommand::Cancel { id, server } => {
            let client = Client::new(&server);
            print(
                &client
                    .send(client.request(reqwest::Method::POST, &format!("/v1/runs/{id}/cancel")))
                    .await?,
            );
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Receipt { id, output, server } => super::receipt::save(&server, &id, &output).await,
        RunsCommand::Verify { id, server } => super::receipt::verify_stored(&server, &id).await,
        RunsCommand::Export { id, output, server } => {
            let client = Client::new(&server);
            let request = client.request(reqwest::Method::GET, &format!("/v1/runs/{id}/bundle"));
            let response = request.send().await.context("cannot reach the server")?;
            if !response.status().is_success() {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                bail!("{status}: {}", body["detail"].as_str().unwrap_or("request failed"));
            }
            let bytes = response.bytes().await.context("the bundle did not arrive whole")?;
            std::fs::write(&output, &bytes).with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("wrote {} ({} bytes)", output.display(), bytes.len());
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Watch { id, server } => watch(&Client::new(&server), &id).await,
        RunsCommand::Rerun {
            id,
            from,
            failed,
            input,
            wait,
            server,
        } => {
            let mut body = match from {
                Some(step) => serde_json::json!({ "from": step }),
                None => serde_json::json!({ "failed": failed }),
            };
            if let Some(input) = input {
                body["input"] = serde_json::from_str(&super::local::read_input(&input)?)?;
            }
            post_run(&server, &format!("/v1/runs/{id}/rerun"), &body, wait.as_deref()).await
        }
    }
}

pub async fn event(command: EventCommand) -> anyhow::Result<ExitCode> {
    match command {
        EventCommand::Send {
            topic,
            data,
            key,
            server,
        } => {
            let data: Value = serde_json::from_str(&super::local::read_json_arg("--data", &data)?)?;
            let mut body = serde_json::json!({ "topic": topic, "data": data });
            if let Some(key) = key {
                body["idempotency_key"] = Value::String(key);
            }
            let client = Client::new(&server);
            print(
                &client
                    .send(client.request(reqwest::Method::POST, "/v1/events").json(&body))
                    .await?,
            );
            Ok(ExitCode::SUCCESS)
        }
        EventCommand::List { topic, page, server } => {
            let query = [
                ("limit", Some(page.limit.to_string())),
                ("topic", topic),
                ("cursor", page.cursor),
            ];
            show(&server, "/v1/events", &query).await
        }
    }
}

/// Prints what `GET path` answers (`schedules list`, `hooks list`).
pub async fn list(path: &str, server: ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&server);
    print(&client.send(client.request(reqwest::Method::GET, path)).await?);
    Ok(ExitCode::SUCCESS)
}

/// The runs of a batch file: JSON lines, each `{"input", "idempotency_key"}`
/// (blank lines skipped). A line that is not such an object is named.
fn read_batch(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut runs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", file.display(), number + 1);
        let run: Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let Some(fields) = run.as_object() else {
            bail!("{}: expected an object with `input` and `idempotency_key`", at());
        };
        if let Some(unknown) = fields.keys().find(|k| *k != "input" && *k != "idempotency_key") {
            bail!(
                "{}: unknown field `{unknown}` (expected `input` and `idempotency_key`)",
                at()
            );
        }
        runs.push(run);
    }
    if runs.is_empty() {
        bail!("{} holds no runs", file.display());
    }
    Ok(runs)
}

fn exit_for(run: &Value) -> ExitCode {
    match run["status"].as_str() {
        Some("failed") => ExitCode::from(EXIT_FAILED),
        Some("canceled") => ExitCode::from(EXIT_CANCELED),
        _ => ExitCode::SUCCESS,
    }
}

/// Follows the SSE stream with the same progress display as `sandstep run`.
async fn watch(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    use eventsource_stream::Eventsource;
    let response = client
        .request(reqwest::Method::GET, &format!("/v1/runs/{id}/events"))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", client.base))?;
    if !response.status().is_success() {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        bail!("{}", body["detail"].as_str().unwrap_or("cannot follow the run"));
    }
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let display = tokio::spawn(super::progress::follow(receiver, Vec::new(), false));
    let mut stream = response.bytes_stream().eventsource();
    while let Some(event) = stream.next().await {
        let event = event.context("the event stream broke")?;
        if let Ok(event) = serde_json::from_str::<crate::run::Event>(&event.data) {
            let _ = sender.send(event);
        }
    }
    drop(sender);
    let _ = display.await;
    let run = client
        .send(client.request(reqwest::Method::GET, &format!("/v1/runs/{id}")))
        .await?;
    println!("{}", run.get("output").cloned().unwrap_or(Value::Null));
    Ok(exit_for(&run))
}
