#!/usr/bin/env bash
# The demo on a fresh machine: build Sandstep and the guest examples,
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

# Steps in seven languages: build every guest example (installing the
# toolchains: npm, PyPI, Debian), store each once (large JavaScript and
# Python components compile here, once), and run one workflow through all.
{ set +x; } 2>/dev/null
guest-examples/build.sh javascript typescript python c go zig assemblyscript
set -x
$sandstep module add target/guests/javascript/filter-orders.wasm --name filter-orders
$sandstep module add target/guests/typescript/rank-customers.wasm --name rank-customers
$sandstep module add target/guests/python/stats.wasm --name statistics
$sandstep module add target/guests/c/histogram.wasm --name histogram
$sandstep module add target/guests/c/top-words.wasm --name top-words
$sandstep module add target/guests/go/invoice.wasm --name invoice
$sandstep module add target/guests/zig/checksum.wasm --name checksum
$sandstep module add target/guests/zig/checksum-step.wasm --name checksum-step
$sandstep module add target/guests/assemblyscript/format-money.wasm --name format-money
$sandstep run examples/orders-report.yaml --input '{
  "orders": [
    {"id": "A1", "customer": "Ada", "items": [{"sku": "pen", "qty": 3, "price": 1.5}, {"sku": "ink", "qty": 1, "price": 4.25}]},
    {"id": "A2", "customer": "Bob", "items": [{"sku": "pad", "qty": 2, "price": 2.4}]},
    {"id": "A3", "customer": "Cy", "items": [{"sku": "pen", "qty": 10, "price": 1.5}]}
  ],
  "note": "Ada ordered pens and ink; Cy ordered pens."}'
