//! Sandstep runs workflows whose steps are untrusted WebAssembly.
//!
//! # Layout
//!
//! - [`sandbox`]: every use of wasmtime. Loads and classifies binaries
//!   (`load`), builds the engine (`engine`), the deny-by-default WASI context
//!   and linker (`wasi`), the per-attempt store state and limiter (`state`),
//!   runs one attempt (`run`) and names how it ended (`outcome`); outbound
//!   HTTP under grants (`http`) and granted files (`files`); workflow code
//!   on its deterministic engine (`workflow`). Compiled
//!   code is cached on disk (`cache`); the epoch ticker (`epoch`) drives
//!   timeouts.
//! - [`limits`]: per-attempt limits and process-wide engine settings, each
//!   with its unit, default and what happens when hit.
//! - [`modules`]: module references (`name:tag`, `sha256:<hex>`) and the
//!   rules for names and tags.
//! - [`files`]: atomic file writes.
//! - [`grants`]: what a step may reach (hosts, directories, scratch) and
//!   what the server allows workflows to grant.
//! - [`nesting`]: the size and depth limits on untrusted definitions and
//!   inputs, the same for the server and the local commands.
//! - [`workflow`]: workflow definitions: parsing (`definition`), templates
//!   and expressions (`template`), input declarations (`inputs`) and the
//!   validation that yields a runnable `Workflow` (`validate`: the whole
//!   definition, one `step`, `code` workflows and their calls, template `paths`, `checks`, `triggers`,
//!   `grants`, `throttle`).
//! - [`run`]: running workflows, knowing no store and no transport: events
//!   (`event`) fold into a run's state (`state`); every change leaves
//!   through the `Journal` (`journal`); requests reach a run through its
//!   inbox (`inbox`); child runs through `children`; the `Executor` drives
//!   a run (`executor`: `schedule`, `attempts`, `children`, `waits`,
//!   `ending`, `redact`, `cached`, `throttled`, `code` for code runs);
//!   code workflows' journal and replaying host (`code`); secrets and their
//!   redaction (`secrets`); the step result cache's key and `StepCache`
//!   (`cache`); keyed limits' model and `Throttle` (`throttle`).
//! - [`service`]: the run service every transport calls: starting runs
//!   (`start`, single and batch), modules and workflow versions
//!   (`definitions`), the one module resolver (`modules`), each run's
//!   fenced durable journal (`journal`), this node's leases and claims
//!   (`owner`), other nodes' wake-ups and runs followed from the store
//!   (`signals`),
//!   paused runs and posted events (`waits`), child runs (`children`),
//!   re-runs (`rerun`), schedules and event triggers (`triggers`),
//!   sealed secrets (`secrets`), the store's step cache (`cache`) and
//!   throttle (`throttle`), callers and usage (`usage`), the nodes list
//!   (`nodes`), listeners (`watch`), run resources (`view`), metrics (`metrics`), and
//!   `RunError`.
//! - [`telemetry`]: OpenTelemetry traces of runs (`serve --otlp-endpoint`):
//!   `traceparent` parsing and span ids derived from runs (`ids`), spans
//!   built from committed events (`spans`), OTLP/HTTP export (`export`).
//! - [`store`]: the durable store, one SQLite file shared by the local
//!   commands and the server, or one PostgreSQL database shared by many
//!   nodes (`backend`, statements built at run time in `sql`): modules
//!   (content-addressed), workflow versions, runs with their owner and
//!   fence, events, the inbox, posted events and waits, triggers, sealed
//!   secrets, the step cache, throttle slots, usage, nodes (`modules`,
//!   `workflows`, `runs`, `inbox`, `events`, `triggers`, `secrets`,
//!   `cache`, `throttle`, `usage`, `nodes`), step counts for run lists
//!   (`summary`), claims and leases (`claims`),
//!   wake-ups between nodes (`notify`), the group-commit `writer` and its
//!   statements (`append`).
//! - [`server`]: the HTTP API (`api`, `runs` for the runs list, `events`
//!   for SSE, `posted` for posted events and schedules, `rerun`, `secrets`,
//!   `cache`, `usage`, `nodes`; `page` cuts list pages), problem+json errors
//!   (`error`), tokens (`auth`), health, metrics and OpenAPI (`ops`), and
//!   the web UI's embedded files from `ui/` (`ui`).
//! - [`replay`]: offline replay of a run bundle (`bundle` reads the zip,
//!   `recorded` what its events say of each attempt, `code` the code's
//!   replay against its journal), each attempt with a verdict.
//! - [`units`]: durations (`10ms`, `5m`) and sizes (`64MiB`).
//! - [`cli`]: the `sandstep` command line (`exec`, `module`, `validate`,
//!   `run` with its `progress` display, `serve`, the server `client`
//!   commands, `secret`, `cache`, `bench`; `local` holds what the local commands
//!   share, `--allow-http`/`--allow-read` among them).
//! - [`bench`]: the benchmarks behind `sandstep bench`.
//!
//! Lifetimes: the [`sandbox::Sandbox`], the [`run::Executor`] and the loaded
//! [`sandbox::Module`]s live for the process; a validated
//! [`workflow::Workflow`] for its version; each attempt gets a fresh store
//! that dies with it.

pub mod bench;
pub mod cli;
pub mod files;
pub mod grants;
pub mod limits;
pub mod modules;
pub mod nesting;
pub mod replay;
pub mod run;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod units;
pub mod workflow;
