//! `sandstep run FILE`: run a workflow in this process, with live progress;
//! the run's output JSON is the last line of stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{EXIT_CANCELED, EXIT_FAILED, EXIT_USAGE};
use crate::limits::Caps;
use crate::run::{Executor, Journal, MemoryJournal, RunStatus, Secrets};
use crate::service::start::{self, Ready, RunRequest};
use crate::service::RunError;
use crate::workflow::ValidationError;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow definition (YAML or JSON).
    pub file: PathBuf,
    /// The run's input JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Largest --input, e.g. 16MiB.
    #[arg(long, value_parser = crate::units::parse_size, default_value = "1MiB")]
    pub max_input_size: u64,
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
    #[command(flatten)]
    pub allow: super::local::Allow,
}

pub async fn run(home: &super::local::Home, args: RunArgs) -> anyhow::Result<ExitCode> {
    let source = super::local::read_definition(&args.file)?;
    let input: serde_json::Value =
        serde_json::from_str(&super::local::read_local_input(&args.input, args.max_input_size)?)?;
    let modules = super::local::modules(home, &args.modules).await?;
    let caps = Caps {
        grants: args.allow.grants()?,
        ..Caps::default()
    };
    let catalog = modules.catalog().await?;
    let loaded = match crate::workflow::load(&source, &caps, Some(&catalog)) {
        Ok(workflow) => match modules.pin(&workflow).await {
            Ok(pinned) => Ok((workflow, pinned)),
            Err(RunError::ModuleMissing { field, message }) => Err(vec![ValidationError {
                location: field,
                message,
            }]),
            Err(RunError::InvalidWorkflow(errors)) => Err(errors),
            Err(other) => return Err(other.into()),
        },
        Err(errors) => Err(errors),
    };
    let (workflow, pinned) = match loaded {
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
    let request = RunRequest {
        input,
        ..RunRequest::default()
    };
    let ready = match start::prepare(&Arc::new(workflow), &pinned, &Arc::new(secrets), request) {
        Ok(ready) => ready,
        Err(errors) => {
            for error in errors {
                eprintln!("error: input: {}", error.message);
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let Ready {
        spec, queued, state, ..
    } = ready;

    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let steps = spec.workflow.steps.iter().map(|s| s.id.clone()).collect();
    let display = tokio::spawn(super::progress::follow(receiver, steps, args.events));
    let journal = MemoryJournal::with_listener(sender);
    journal.append(std::slice::from_ref(&queued)).await?;

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let mut executor = Executor::new(modules.sandbox().clone(), args.max_concurrent_attempts, caps);
    let modules = Arc::new(modules);
    executor.set_modules(modules.clone());
    // `cache:` steps use the data directory's cache when it has a store
    // (what `sandstep cache clear` clears), memory otherwise.
    executor = match crate::store::Db::open_existing(&home.store).await? {
        Some(db) => executor.with_cache(Arc::new(crate::service::cache::StoreCache::new(db))),
        None => executor.with_cache(Arc::new(crate::run::cache::MemoryCache::default())),
    };
    // `throttle:` limits hold among this run's own attempts.
    let executor = executor.with_throttle(Arc::new(crate::run::throttle::MemoryThrottle::default()));
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
