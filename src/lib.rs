//! Sandstep runs workflows whose steps are untrusted WebAssembly.
//!
//! # Layout
//!
//! - [`sandbox`]: every use of wasmtime. Loads and classifies binaries
//!   (`load`), builds the engine (`engine`), the deny-by-default WASI context
//!   and linker (`wasi`), the per-attempt store state and limiter (`state`),
//!   runs one attempt (`run`) and names how it ended (`outcome`). Compiled
//!   code is cached on disk (`cache`); the epoch ticker (`epoch`) drives
//!   timeouts.
//! - [`limits`]: per-attempt limits and process-wide engine settings, each
//!   with its unit, default and what happens when hit.
//! - [`modules`]: the content-addressed module store on disk (`sha256:<hex>`
//!   blobs, `name:tag` references).
//! - [`files`]: atomic file writes.
//! - [`units`]: durations (`10ms`, `5m`) and sizes (`64MiB`).
//! - [`cli`]: the `sandstep` command line (`exec`, `module`, `bench`).
//! - [`bench`]: the benchmarks behind `sandstep bench`.
//!
//! Lifetimes: the [`sandbox::Sandbox`] and the loaded [`sandbox::Module`]s
//! live for the process; each attempt gets a fresh store that dies with it.

pub mod bench;
pub mod cli;
pub mod files;
pub mod limits;
pub mod modules;
pub mod sandbox;
pub mod run;
pub mod units;
pub mod workflow;
