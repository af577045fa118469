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
//! - [`modules`]: module references (`name:tag`, `sha256:<hex>`) and the
//!   rules for names and tags.
//! - [`files`]: atomic file writes.
//! - [`workflow`]: workflow definitions: parsing (`definition`), templates
//!   and expressions (`template`), input declarations (`inputs`) and the
//!   validation that yields a runnable `Workflow` (`validate`).
//! - [`run`]: running workflows: events (`event`) fold into a run's state
//!   (`state`); every change leaves through the `Journal` (`journal`); the
//!   `Executor` drives a run (`executor`); secrets and their redaction
//!   (`secrets`); modules for local runs (`local`).
//! - [`store`]: the durable store, one SQLite file shared by the local
//!   commands and the server: modules (content-addressed), workflow
//!   versions, runs and events (`modules`, `workflows`, `runs`), and the
//!   group-commit event writer (`writer`).
//! - [`server`]: the HTTP API (`api`, `events` for SSE), problem+json errors
//!   (`error`), tokens (`auth`), the run lifecycle over the durable journal
//!   (`runner`), run resources (`view`), health, metrics, OpenAPI (`ops`,
//!   `metrics`).
//! - [`units`]: durations (`10ms`, `5m`) and sizes (`64MiB`).
//! - [`cli`]: the `sandstep` command line (`exec`, `module`, `validate`,
//!   `run` with its `progress` display, `serve`, the server `client`
//!   commands, `bench`).
//! - [`bench`]: the benchmarks behind `sandstep bench`.
//!
//! Lifetimes: the [`sandbox::Sandbox`], the [`run::Executor`] and the loaded
//! [`sandbox::Module`]s live for the process; a validated
//! [`workflow::Workflow`] for its version; each attempt gets a fresh store
//! that dies with it.

pub mod bench;
pub mod cli;
pub mod files;
pub mod limits;
pub mod modules;
pub mod run;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod store;
pub mod units;
pub mod workflow;
