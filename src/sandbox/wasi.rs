//! What a step may touch, in one place: the WASI context every attempt gets and
//! the WASI interfaces linked for it.
//!
//! Deny by default:
//! - no preopened directories, so no file can be opened or listed;
//! - no environment variables;
//! - no arguments, except a command's own `args` from its workflow step;
//! - stdin: the input JSON for a command, closed for a step component;
//! - stdout and stderr captured into bounded in-memory buffers, never the
//!   host's own streams;
//! - no network: the `wasi:sockets` interfaces (TCP, UDP, name lookup) and
//!   `wasi:http` are not linked at all, so a component that imports them is
//!   rejected when it is added, and socket use is switched off in the context
//!   as well (preview-1 modules have no way to create a socket);
//! - available: wall and monotonic clocks, secure and insecure randomness.

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::filesystem::WasiFilesystem;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtxBuilder, WasiView};

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
    // Linked so that language runtimes which import them load; with no
    // preopened directory there is nothing to open.
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// The host's captured standard streams for one attempt.
pub(crate) struct Stdio {
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

impl Stdio {
    /// Buffers that hold up to `limit` bytes each and one more, so that a
    /// guest writing past the limit is told apart from one that reached it.
    pub fn new(stdout_limit: u64, stderr_limit: u64) -> Self {
        let cap = |limit: u64| usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
        Stdio {
            stdout: MemoryOutputPipe::new(cap(stdout_limit)),
            stderr: MemoryOutputPipe::new(cap(stderr_limit)),
        }
    }
}

/// The WASI context of one attempt. `stdin` is the input for a command, `None`
/// for a step component; `args` are a command's arguments (argv[0] first).
pub(crate) fn context(stdin: Option<&[u8]>, args: &[String], stdio: &Stdio) -> WasiCtxBuilder {
    // `WasiCtxBuilder::new()` starts with no preopens, no environment, no
    // args, stdin closed and stdout/stderr discarded.
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .args(args)
        .stdout(stdio.stdout.clone())
        .stderr(stdio.stderr.clone());
    if let Some(stdin) = stdin {
        builder.stdin(MemoryInputPipe::new(stdin.to_vec()));
    }
    builder
}

/// Links exactly [`ALLOWED_WASI_INTERFACES`] (async host implementations).
pub(crate) fn add_to_linker<T: WasiView>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io;
    io::error::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;

    use wasmtime_wasi::cli::WasiCliView as _;
    use wasmtime_wasi::clocks::WasiClocksView as _;
    use wasmtime_wasi::filesystem::WasiFilesystemView as _;
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
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
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
