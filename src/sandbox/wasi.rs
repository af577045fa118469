//! What a step may touch, in one place: the WASI context every attempt gets and
//! the WASI interfaces linked for it.
//!
//! Deny by default:
//! - no preopened directories unless granted (`files`: read-only
//!   directories the server exposes, a size-capped scratch);
//! - no environment variables but the step's granted `env`;
//! - no arguments, except a command's own `args` from its workflow step;
//! - stdin: the input JSON for a command, closed for a step component;
//! - stdout and stderr captured into bounded in-memory buffers ([`Capture`]),
//!   never the host's own streams;
//! - no sockets: the `wasi:sockets` interfaces (TCP, UDP, name lookup) are
//!   not linked at all, so a component that imports them is rejected when
//!   it is added, and socket use is switched off in the context as well;
//!   `wasi:http` is linked, and reaches only the hosts a step is granted
//!   (`http`), a module that imports it without a grant does not run;
//! - available: wall and monotonic clocks, secure and insecure randomness.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli};
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtxBuilder, WasiView};
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

use super::files::HasFiles;
use super::outcome::Failure;
use super::state::{ComponentState, Tripwire};
use crate::limits::Limits;

/// The WASI interfaces (without version) a component may import. Anything
/// else a component imports, other than `sandstep:step/*`, is refused.
pub const ALLOWED_WASI_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // Linked so that language runtimes which import them load; without a
    // file grant there is no preopened directory, so nothing to open.
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    // Outbound HTTP: a module importing these runs only when its step is
    // granted hosts (`capability_denied` otherwise).
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// The host's captured standard streams for one attempt.
pub(crate) struct Stdio {
    pub stdout: Capture,
    pub stderr: Capture,
}

impl Stdio {
    /// A step's streams: both are logs, bounded by the log limit.
    pub fn step(limits: &Limits, tripwire: &Tripwire) -> Self {
        let logs = Failure::LogsTooLarge {
            message: format!("logs larger than the limit of {} bytes", limits.log_bytes),
        };
        Stdio {
            stdout: Capture::new(limits.log_bytes, logs.clone(), tripwire),
            stderr: Capture::new(limits.log_bytes, logs, tripwire),
        }
    }

    /// A command's streams: stdout is the output, stderr the logs.
    pub fn command(limits: &Limits, tripwire: &Tripwire) -> Self {
        Stdio {
            stdout: Capture::new(
                limits.output_bytes,
                Failure::OutputTooLarge {
                    limit: limits.output_bytes,
                },
                tripwire,
            ),
            stderr: Capture::new(
                limits.log_bytes,
                Failure::LogsTooLarge {
                    message: format!("logs larger than the limit of {} bytes", limits.log_bytes),
                },
                tripwire,
            ),
        }
    }
}

/// One captured stream: holds up to its limit and one byte more, so that a
/// guest writing past the limit is told apart from one that reached it, and
/// trips `over` the moment it holds more than the limit. A write larger than
/// the room left (which a guest that asks `check-write` first never makes)
/// keeps what fits, trips, and traps.
#[derive(Clone)]
pub(crate) struct Capture {
    pipe: MemoryOutputPipe,
    limit: usize,
    over: Failure,
    tripwire: Tripwire,
}

impl Capture {
    fn new(limit: u64, over: Failure, tripwire: &Tripwire) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX - 1);
        Capture {
            pipe: MemoryOutputPipe::new(limit + 1),
            limit,
            over,
            tripwire: tripwire.clone(),
        }
    }

    pub fn contents(&self) -> Bytes {
        self.pipe.contents()
    }

    /// Keeps what fits of `bytes`; returns how much that was.
    fn keep(&mut self, bytes: &[u8]) -> usize {
        let room = self.pipe.check_write().unwrap_or(0);
        let held = self.limit + 1 - room;
        let kept = bytes.len().min(room);
        if kept > 0 {
            // Within capacity, so the pipe accepts it.
            let _ = OutputStream::write(&mut self.pipe, Bytes::copy_from_slice(&bytes[..kept]));
        }
        if held + kept > self.limit {
            self.tripwire.trip(self.over.clone());
        }
        kept
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.keep(&bytes) < bytes.len() {
            return Err(StreamError::trap(&self.over.to_string()));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        self.pipe.check_write()
    }
}

impl AsyncWrite for Capture {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(self.keep(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The WASI context of one attempt. `stdin` is the input for a command, `None`
/// for a step component; `args` are a command's arguments (argv[0] first);
/// `env` the step's granted environment.
pub(crate) fn context(
    stdin: Option<&[u8]>,
    args: &[String],
    env: &[(String, String)],
    stdio: &Stdio,
) -> WasiCtxBuilder {
    // `WasiCtxBuilder::new()` starts with no preopens, no environment, no
    // args, stdin closed and stdout/stderr discarded.
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .args(args)
        .envs(env)
        .stdout(stdio.stdout.clone())
        .stderr(stdio.stderr.clone());
    if let Some(stdin) = stdin {
        builder.stdin(MemoryInputPipe::new(stdin.to_vec()));
    }
    builder
}

/// Links exactly [`ALLOWED_WASI_INTERFACES`] but `wasi:http` (async host
/// implementations; the filesystem through the grants in `files`).
pub(crate) fn add_to_linker(l: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    type T = ComponentState;
    use wasmtime_wasi_io::bindings::wasi::io;
    io::error::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;

    use wasmtime_wasi::cli::WasiCliView as _;
    use wasmtime_wasi::clocks::WasiClocksView as _;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    filesystem::types::add_to_linker::<T, HasFiles>(l, T::files)?;
    filesystem::preopens::add_to_linker::<T, HasFiles>(l, T::files)?;
    Ok(())
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Whether a component import (`wasi:cli/stdin@0.2.3`) is one the host links.
pub(crate) fn import_allowed(name: &str) -> bool {
    let unversioned = name.split('@').next().unwrap_or(name);
    unversioned.starts_with("sandstep:step/") || ALLOWED_WASI_INTERFACES.contains(&unversioned)
}
