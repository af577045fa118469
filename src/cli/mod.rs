//! The `sandstep` command line. Each subcommand lives in its own file; this
//! one parses arguments and dispatches.

mod bench;
mod cache;
mod client;
mod exec;
mod local;
mod module;
mod progress;
mod receipt;
mod replay;
mod run;
mod secret;
mod serve;
mod validate;
mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sandstep",
    version,
    about = "Run workflows whose steps are untrusted WebAssembly"
)]
pub struct Cli {
    /// Where modules, compiled code and runs are kept.
    #[arg(long, global = true, env = "SANDSTEP_DATA_DIR", default_value = ".sandstep")]
    pub data_dir: PathBuf,

    /// A PostgreSQL database to keep modules, workflows and runs in
    /// (postgres://USER@HOST:PORT/DB), shared by every node serving it;
    /// without it, the SQLite file in the data directory.
    #[arg(long, global = true, env = "SANDSTEP_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the local module store.
    #[command(subcommand)]
    Module(module::ModuleCommand),
    /// Run one step: a .wasm file, or a stored name[:tag] or digest.
    Exec(exec::ExecArgs),
    /// Serve the HTTP API on the embedded store in the data directory.
    Serve(serve::ServeArgs),
    /// Workflows on a server.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Runs on a server.
    #[command(subcommand)]
    Runs(client::RunsCommand),
    /// Events on a server: post one, list them.
    #[command(subcommand)]
    Event(client::EventCommand),
    /// Schedule triggers on a server.
    #[command(subcommand)]
    Schedules(client::SchedulesCommand),
    /// Webhooks on a server (`POST /hooks/NAME`).
    #[command(subcommand)]
    Hooks(client::HooksCommand),
    /// The step result cache: clear it (on the server with SANDSTEP_URL, else locally).
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Secrets on a server: set one from stdin, list or delete them.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Check a workflow definition: every error, with its location.
    Validate(validate::ValidateArgs),
    /// Run a workflow in this process, with live progress; prints its output JSON last.
    Run(run::RunArgs),
    /// Replay a run bundle here: every recorded attempt again, each compared with its record.
    Replay(replay::ReplayArgs),
    /// Check a run receipt's signature and, with its bundle, its chain and digests.
    Verify(receipt::VerifyArgs),
    /// Measure the engine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Exit code for a step or run that failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage or input (as clap uses).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a run that was canceled.
pub const EXIT_CANCELED: u8 = 3;

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SANDSTEP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let home = match local::Home::new(cli.data_dir, cli.database.as_deref()) {
        Ok(home) => home,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Module(command) => module::run(&home, command).await,
            Command::Exec(args) => exec::run(&home, args).await,
            Command::Serve(args) => serve::run(&home, args).await,
            Command::Workflow(command) => workflow::workflow(command).await,
            Command::Runs(command) => client::runs(command).await,
            Command::Event(command) => client::event(command).await,
            Command::Schedules(client::SchedulesCommand::List { server }) => {
                client::list("/v1/schedules", server).await
            }
            Command::Hooks(client::HooksCommand::List { server }) => client::list("/v1/hooks", server).await,
            Command::Secret(command) => secret::run(command).await,
            Command::Cache(command) => cache::run(&home, command).await,
            Command::Validate(args) => validate::run(&home, args).await,
            Command::Run(args) => run::run(&home, args).await,
            Command::Bench(command) => bench::run(&home, command).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Verify(args) => receipt::verify(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
