//! `sandstep bench ...`: print the engine's figures against in-process baselines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Per-attempt cost of a trivial step against a bare wasmtime loop, and
    /// compile / cached-load time of every guest module.
    Sandbox {
        /// Attempts per path.
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
        /// Built guests, one folder per language (guest-examples/build.sh).
        #[arg(long, default_value = "target/guests")]
        guests: PathBuf,
        /// The trivial step component.
        #[arg(long, default_value = "target/guests/rust/echo.wasm")]
        trivial: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The durable path through the real server: runs/s over HTTP, durable
    /// step completions/s, a 40-step chain end to end.
    Server {
        /// The trivial step component.
        #[arg(long, default_value = "target/guests/rust/echo.wasm")]
        trivial: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Executor cost per step: a 40-step chain and a 1,000-item for_each of
    /// a trivial step, in process, against the sandbox's attempt time.
    Workflow {
        /// The trivial step component.
        #[arg(long, default_value = "target/guests/rust/echo.wasm")]
        trivial: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(_data_dir: &Path, command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Sandbox {
            iterations,
            guests,
            trivial,
            json,
        } => {
            let report = crate::bench::sandbox::run(&guests, &trivial, iterations).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Server { trivial, json } => {
            let report = crate::bench::server::run(&trivial).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Workflow { trivial, json } => {
            let report = crate::bench::workflow::run(&trivial).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
