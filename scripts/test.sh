#!/usr/bin/env bash
# Everything CI checks, on a fresh machine: formatting, every test (which
# build every guest from source) on SQLite and again, store and API alike,
# on a private PostgreSQL cluster (scripts/postgres.sh), the web UI in
# headless Chromium (scripts/browser.sh installs it), API conformance
# (schemathesis against a real server, about 3 minutes), and clippy. One
# release build is shared by the binary and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/browser.sh
cargo fmt --all -- --check
cargo fmt --manifest-path guest-examples/tools/Cargo.toml -- --check
eval "$(scripts/postgres.sh start)"
trap 'scripts/postgres.sh stop "$SANDSTEP_TEST_PGDATA"' EXIT
env -u SANDSTEP_TEST_POSTGRES cargo test --release --locked
cargo test --release --locked --test tests
scripts/conformance.sh
cargo clippy --release --locked --all-targets -- -D warnings
cargo clippy --release --locked --manifest-path guest-examples/tools/Cargo.toml -- -D warnings
