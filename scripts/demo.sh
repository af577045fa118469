#!/usr/bin/env bash
# The demo on a fresh machine: build Sandstep and the Rust guest examples,
# store them in a throw-away data directory, and run steps with `sandstep exec`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
guest-examples/build.sh rust

sandstep=target/release/sandstep
export SANDSTEP_DATA_DIR="${SANDSTEP_DATA_DIR:-target/demo-data}"
set -x
$sandstep module add target/guests/rust/hello.wasm --name hello --tag v1
$sandstep module add target/guests/rust/stats-cmd.wasm --name stats
$sandstep module list
$sandstep exec hello:v1 --input '{"name": "Ada"}'
$sandstep exec target/guests/rust/wordcount.wasm --input '{"text": "the quick fox and the lazy dog", "top": 2}'
$sandstep exec stats --input '{"numbers": [3, 1, 4, 1, 5]}' --arg --round --arg 2
# Bad input is a failed attempt with a named error kind (--json shows the whole attempt):
$sandstep exec target/guests/rust/transform.wasm --input '{"items": "not a list"}' --json || true
# A workflow: word statistics, a filter, a command with templated args, and a for_each.
$sandstep validate examples/text-report.yaml
$sandstep run examples/text-report.yaml \
  --module wordcount=target/guests/rust/wordcount.wasm --module transform=target/guests/rust/transform.wasm \
  --module stats=target/guests/rust/stats-cmd.wasm --module hello=target/guests/rust/hello.wasm \
  --input '{"author": "Ada", "text": "the cat and the dog and the bird saw the cat"}'
