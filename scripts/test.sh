#!/usr/bin/env bash
# Everything CI checks, on a fresh machine: formatting, every test (which
# build every guest from source) on SQLite and again, store and API alike,
# on a private PostgreSQL cluster (scripts/postgres.sh), the web UI in
# headless Chromium (scripts/browser.sh installs it), the Python and
# TypeScript clients against a real server (scripts/clients.sh), API conformance
# (schemathesis against a real server, about 3 minutes), and clippy. One
# release build is shared by the binary and the tests; guests and compiled
# guests are reused by the second round (guest-examples/stamp.sh,
# target/test-compiled/). Prints how long each phase took, at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
timings=()
phase() {
  local name=$1 start=$SECONDS status=0
  shift
  "$@" || status=$?
  timings+=("$(printf '%5ds  %s' $((SECONDS - start)) "$name")$([ $status -eq 0 ] || echo " (failed, exit $status)")")
  [ $status -eq 0 ] || exit $status
}
summary() {
  echo "scripts/test.sh: phases (${SECONDS}s in all):"
  [ ${#timings[@]} -eq 0 ] || printf '  %s\n' "${timings[@]}"
}
postgres_stop() {
  [ -z "${SANDSTEP_TEST_PGDATA:-}" ] || scripts/postgres.sh stop "$SANDSTEP_TEST_PGDATA"
}
trap 'postgres_stop; summary' EXIT
phase setup scripts/setup.sh
phase chromium scripts/browser.sh
phase fmt cargo fmt --all -- --check
phase "fmt (guest tools)" cargo fmt --manifest-path guest-examples/tools/Cargo.toml -- --check
start=$SECONDS
eval "$(scripts/postgres.sh start)"
timings+=("$(printf '%5ds  %s' $((SECONDS - start)) "postgresql")")
phase "build" cargo test --release --locked --no-run
phase "tests on SQLite" env -u SANDSTEP_TEST_POSTGRES cargo test --release --locked
phase "tests on PostgreSQL" cargo test --release --locked --test tests
phase clients scripts/clients.sh
phase conformance scripts/conformance.sh
phase clippy cargo clippy --release --locked --all-targets -- -D warnings
phase "clippy (guest tools)" cargo clippy --release --locked --manifest-path guest-examples/tools/Cargo.toml -- -D warnings
