//! The one integration-test binary (wasmtime is linked once). Each module
//! covers one area; `support` builds the real guests from source.

mod support;

mod workflow_runs;
mod workflow_validation;

mod bench_floor;
mod bounded_parsing;
mod budgets;
mod bundles;
mod cache;
mod cli_client;
mod cli_exec;
mod cli_run;
mod cluster;
mod code_instances;
mod code_workflows;
mod crash_recovery;
mod files;
mod grants;
mod handlers;
mod isolation;
mod languages;
mod limits;
mod mcp;
mod mcp_tasks;
mod module_store;
mod nodes;
mod outcomes;
mod properties;
mod receipts;
mod replay;
mod reruns;
mod run_resource;
mod run_service;
mod seams;
mod secrets;
mod server_api;
mod subworkflows;
mod throttle;
mod traces;
mod triggers;
mod ui;
mod upgrades;
mod waits;
mod webhooks;
