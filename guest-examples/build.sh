#!/usr/bin/env bash
# Builds every guest example into target/guests/<language>/ at the project root.
# Usage: guest-examples/build.sh [language...]   (default: every language)
# Installs the Rust wasm targets it needs; a toolchain that cannot be
# installed is an error, never a silent skip.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$root/target/guests"
languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(rust)

build_rust() {
  rustup target add wasm32-wasip2 wasm32-wasip1 >/dev/null
  local dir="$here/rust"
  cargo build --quiet --release --manifest-path "$dir/Cargo.toml" --target wasm32-wasip2 \
    -p echo -p hello -p transform -p wordcount
  cargo build --quiet --release --manifest-path "$dir/Cargo.toml" --target wasm32-wasip1 -p stats-cmd
  mkdir -p "$out/rust"
  for step in echo hello transform wordcount; do
    cp "$dir/target/wasm32-wasip2/release/$step.wasm" "$out/rust/$step.wasm"
  done
  cp "$dir/target/wasm32-wasip1/release/stats-cmd.wasm" "$out/rust/stats-cmd.wasm"
}

for language in "${languages[@]}"; do
  case "$language" in
    rust) build_rust ;;
    *) echo "build.sh: unknown language '$language' (known: rust)" >&2; exit 2 ;;
  esac
  echo "built $language guests into ${out#"$root"/}/$language/" >&2
done
