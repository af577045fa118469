//! `sandstep run FILE`: run a workflow in this process, with live progress;
//! the run's output JSON is the last line of stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{EXIT_CANCELED, EXIT_FAILED, EXIT_USAGE};
use crate::limits::Caps;
use crate::run::{Executor, Journal, MemoryJournal, RunSpec, RunState, RunStatus, Secrets};
use crate::workflow::ModuleCatalog;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow definition (YAML or JSON).
    pub file: PathBuf,
    /// The run's input JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// A module file for a reference: NAME=PATH (repeatable); others come from the local store.
    #[arg(long = "module", value_name = "NAME=PATH")]
    pub modules: Vec<String>,
    /// Secrets for {{ secrets.KEY }}: a JSON object or KEY=VALUE lines
    /// (SANDSTEP_SECRET_<KEY> variables are read too).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// Print every event as a JSON line on stdout.
    #[arg(long)]
    pub events: bool,
    /// Attempts running at once in this process.
    #[arg(long, default_value_t = 64)]
    pub max_concurrent_attempts: usize,
}

pub async fn run(data_dir: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let input: serde_json::Value = serde_json::from_str(&super::exec::read_input(&args.input)?)?;
    let local = super::validate::local_modules(data_dir, &args.modules).await?;
    let caps = Caps::default();
    let loaded = crate::workflow::load(&source, &caps, Some(&local as &dyn ModuleCatalog));
    let loaded = match loaded {
        Ok(workflow) => local.load_all(&workflow).await.map(|modules| (workflow, modules)),
        Err(errors) => Err(errors),
    };
    let (workflow, modules) = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {}: {error}", args.file.display());
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let mut secrets = Secrets::from_env();
    if let Some(path) = &args.secrets {
        secrets.load_file(path).map_err(anyhow::Error::msg)?;
    }
    let spec = RunSpec {
        run_id: uuid::Uuid::now_v7().to_string(),
        workflow: Arc::new(workflow),
        modules,
        secrets: Arc::new(secrets),
    };
    let queued = match Executor::queue(&spec, &input) {
        Ok(event) => event,
        Err(errors) => {
            for error in errors {
                eprintln!("error: input: {error}");
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };

    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let steps = spec.workflow.steps.iter().map(|s| s.id.clone()).collect();
    let display = tokio::spawn(super::progress::follow(receiver, steps, args.events));
    let journal = MemoryJournal::with_listener(sender);
    journal.append(std::slice::from_ref(&queued)).await?;
    let mut state = RunState::new(&spec.run_id, &spec.workflow);
    state.apply(&queued);

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let sandbox = local.sandbox();
    let executor = Executor::new(sandbox, args.max_concurrent_attempts, caps);
    let finished = executor.execute(&spec, state, &journal, cancel).await?;
    drop(journal);
    let _ = display.await;

    println!("{}", finished.output.clone().unwrap_or(serde_json::Value::Null));
    Ok(match finished.status {
        RunStatus::Completed => ExitCode::SUCCESS,
        RunStatus::Canceled => ExitCode::from(EXIT_CANCELED),
        _ => {
            if let Some(error) = &finished.error {
                eprintln!("error: run {} failed: {error}", finished.run_id);
            }
            ExitCode::from(EXIT_FAILED)
        }
    })
}
