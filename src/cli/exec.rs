//! `sandstep exec`: run one step and print its output (or its failure).

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{EXIT_FAILED, EXIT_USAGE};
use crate::limits::Limits;
use crate::sandbox::{Access, AttemptRequest, StepContext};
use crate::units::{parse_duration, parse_size};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A .wasm file, or a stored module: name[:tag], sha256:<hex> or name@sha256:<hex>.
    pub module: String,
    /// Input JSON, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Largest --input, e.g. 16MiB.
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    pub max_input_size: u64,
    /// Fuel limit (instructions, roughly).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Memory limit, e.g. 64MiB.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Wall-clock limit, e.g. 5s or 250ms.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Output limit, e.g. 1MiB.
    #[arg(long, value_parser = parse_size)]
    pub max_output: Option<u64>,
    /// Log limit, e.g. 256KiB.
    #[arg(long, value_parser = parse_size)]
    pub max_logs: Option<u64>,
    /// An argument for a command module (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Hosts and directories this step is granted (and thereby allowed).
    #[command(flatten)]
    pub allow: super::local::Allow,
    /// A fresh scratch directory at /scratch of this size, e.g. 64MiB.
    #[arg(long, value_parser = parse_size)]
    pub scratch: Option<u64>,
    /// An environment variable for the module: KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Print the whole attempt as JSON: status, output or error, duration, fuel, peak memory, logs.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(home: &super::local::Home, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let input = super::local::read_local_input(&args.input, args.max_input_size)?;
    let mut limits = Limits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(memory) = args.memory {
        limits.memory = memory;
    }
    if let Some(timeout) = args.timeout {
        limits.timeout = timeout;
    }
    if let Some(output) = args.max_output {
        limits.output_bytes = output;
    }
    if let Some(logs) = args.max_logs {
        limits.log_bytes = logs;
    }
    let bytes = super::local::module_bytes(home, &args.module).await?;
    let sandbox = super::local::sandbox(&home.data_dir)?;
    if limits.memory > sandbox.settings().max_memory {
        bail!(
            "--memory {} is above the cap of {} bytes",
            limits.memory,
            sandbox.settings().max_memory
        );
    }
    let module = match sandbox.load(&bytes) {
        Ok(module) => module,
        Err(e) => {
            eprintln!("error: {} was rejected: {e}", args.module);
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let allowed = args.allow.grants()?;
    let mut env = Vec::new();
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--env {pair:?}: expected KEY=VALUE"))?;
        env.push((key.to_string(), value.to_string()));
    }
    let access = Access {
        http: allowed.http.clone(),
        read: allowed
            .read
            .iter()
            .map(|(name, dir)| (name.clone(), dir.dir.clone()))
            .collect(),
        scratch: args.scratch,
        env,
    };
    let context = StepContext {
        run_id: "exec".into(),
        step_id: "exec".into(),
        attempt: 1,
        idempotency_key: format!("exec-{}", module.info.digest),
        traceparent: None,
    };
    let attempt = sandbox
        .run(
            &module,
            AttemptRequest {
                input: &input,
                args: &args.args,
                context: &context,
                limits: &limits,
                access: &access,
            },
        )
        .await;
    if args.json {
        println!("{}", serde_json::to_string(&attempt)?);
    } else {
        for line in &attempt.logs {
            eprintln!(
                "[{}] {}",
                serde_json::to_value(line.level)?.as_str().unwrap_or("info"),
                line.message
            );
        }
        match (attempt.output(), attempt.failure()) {
            (Some(output), _) => println!("{output}"),
            (None, Some(failure)) => eprintln!("error: {}: {failure}", failure.kind()),
            (None, None) => unreachable!("an attempt has an output or a failure"),
        }
    }
    Ok(if attempt.output().is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
