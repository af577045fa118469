#!/usr/bin/env bash
# Installs what building Sandstep and its guests needs on a fresh machine
# that has a Rust toolchain (rustup). Safe to run again.
set -euo pipefail
rustup target add wasm32-wasip2 wasm32-wasip1
rustup component add rustfmt clippy
