//! `sandstep bench ...`: print the engine's figures against in-process baselines.

use std::path::PathBuf;
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
    /// step completions/s, a 40-step chain end to end, as YAML and as code.
    Server {
        /// The trivial step component.
        #[arg(long, default_value = "target/guests/rust/echo.wasm")]
        trivial: PathBuf,
        /// The workflow code of the code scenarios (guest-examples/rust/chain-flow).
        #[arg(long, default_value = "target/guests/rust/chain-flow.wasm")]
        code: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// 10,000 runs paused on waits: the server's memory with them paused,
    /// then one posted event each: events/s and post-to-end latency.
    Waits {
        /// The trivial step component.
        #[arg(long, default_value = "target/guests/rust/echo.wasm")]
        trivial: PathBuf,
        /// The workflow code of the code scenarios (guest-examples/rust/chain-flow).
        #[arg(long, default_value = "target/guests/rust/chain-flow.wasm")]
        code: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Durable step completions/s through N `sandstep serve` processes on
    /// one PostgreSQL database (`--database`), against one node on it.
    Cluster {
        /// Nodes to measure against one.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
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
        /// The workflow code of the code scenarios (guest-examples/rust/chain-flow).
        #[arg(long, default_value = "target/guests/rust/chain-flow.wasm")]
        code: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(home: &super::local::Home, command: BenchCommand) -> anyhow::Result<ExitCode> {
    let guests: Vec<&std::path::Path> = match &command {
        BenchCommand::Sandbox { trivial, .. } | BenchCommand::Cluster { trivial, .. } => vec![trivial],
        BenchCommand::Server { trivial, code, .. }
        | BenchCommand::Waits { trivial, code, .. }
        | BenchCommand::Workflow { trivial, code, .. } => vec![trivial, code],
    };
    build_missing(&guests)?;
    match command {
        BenchCommand::Sandbox {
            iterations,
            guests,
            trivial,
            json,
        } => print_report(&crate::bench::sandbox::run(&guests, &trivial, iterations).await?, json),
        BenchCommand::Server { trivial, code, json } => {
            print_report(&crate::bench::server::run(&trivial, &code).await?, json)
        }
        BenchCommand::Waits { trivial, code, json } => {
            print_report(&crate::bench::waits::run(&trivial, &code).await?, json)
        }
        BenchCommand::Cluster { nodes, trivial, json } => {
            let crate::store::Location::Postgres(database) = &home.store else {
                anyhow::bail!("bench cluster needs a PostgreSQL database: --database postgres://USER@HOST:PORT/DB");
            };
            print_report(&crate::bench::cluster::run(database, nodes, &trivial).await?, json)
        }
        BenchCommand::Workflow { trivial, code, json } => {
            print_report(&crate::bench::workflow::run(&trivial, &code).await?, json)
        }
    }
}

/// A report as one JSON line, or as its text table.
fn print_report<R: serde::Serialize + std::fmt::Display>(report: &R, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The script that builds the Rust guests the benchmarks run.
const BUILD: &str = "guest-examples/build.sh";

/// Builds the benchmarks' guests when one is missing under the project's
/// `target/guests/rust/` (a fresh checkout): `guest-examples/build.sh rust`,
/// run from the project root, which installs the wasm target if needed. A
/// guest passed by path elsewhere, or missing outside a checkout, is an error
/// that names the command.
fn build_missing(guests: &[&std::path::Path]) -> anyhow::Result<()> {
    let missing = guests.iter().filter(|guest| !guest.exists()).collect::<Vec<_>>();
    if missing.is_empty() {
        return Ok(());
    }
    let buildable =
        std::path::Path::new(BUILD).is_file() && missing.iter().all(|guest| guest.starts_with("target/guests/rust"));
    if buildable {
        eprintln!("bench: building the benchmark's guests from source: {BUILD} rust");
        let status = std::process::Command::new(BUILD).arg("rust").status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => anyhow::bail!("{BUILD} rust failed ({status}); the benchmarks need its guests"),
            Err(error) => anyhow::bail!("cannot run {BUILD}: {error}"),
        }
    }
    if let Some(guest) = missing.iter().find(|guest| !guest.exists()) {
        anyhow::bail!(
            "cannot read {}: the benchmarks run guests built from source; build them with \
             `{BUILD} rust` (from the project root), or pass the path",
            guest.display()
        );
    }
    Ok(())
}
