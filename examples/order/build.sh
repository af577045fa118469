#!/usr/bin/env bash
# Builds the order example from source: the steps (Rust) and the workflow
# code in each language, into target/order/ at the project root:
#   order-steps.wasm, order-flow-rust.wasm, order-flow-python.wasm,
#   order-flow-typescript.wasm
#
# Usage: examples/order/build.sh [rust|python|typescript...]   (default: all)
# Installs what it needs when missing: the wasm32-wasip2 Rust target,
# componentize-py (pinned, in target/toolchains/python, as for the guest
# examples), and the TypeScript example's npm packages at its lock file's
# versions.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/order"
languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(rust python typescript)
die() { echo "examples/order/build.sh: $*" >&2; exit 1; }
mkdir -p "$out"

build_rust() {
  rustup target add wasm32-wasip2 >/dev/null
  cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$here/Cargo.toml" || die "cargo build failed"
  cp "$here/target/wasm32-wasip2/release/order_steps.wasm" "$out/order-steps.wasm"
  cp "$here/target/wasm32-wasip2/release/order_flow.wasm" "$out/order-flow-rust.wasm"
}

build_python() {
  local bin
  bin="$("$root/guest-examples/python-venv.sh" "$root/guest-examples/python/requirements.txt")" \
    || die "cannot install componentize-py"
  # --stub-wasi: workflow code gets no WASI at all (its clock and random
  # numbers are ctx.now() and ctx.random(), recorded in the journal).
  (cd "$here/python" && "$bin/componentize-py" -d "$root/wit/workflow.wit" -w workflow componentize order_flow \
    -p . -p "$root/sdk/python" --stub-wasi -o "$out/order-flow-python.wasm" >/dev/null) || die "componentize-py failed"
}

build_typescript() {
  command -v npm >/dev/null || die "npm is not installed (Node.js 20 or newer is needed)"
  (cd "$here/typescript" && npm install --no-save --silent --no-audit --no-fund && npm run --silent build) \
    || die "tsc or componentize-js failed"
  mv "$here/typescript/order-flow.wasm" "$out/order-flow-typescript.wasm"
}

stamp="$root/guest-examples/stamp.sh"
for language in "${languages[@]}"; do
  case "$language" in
    rust) build_rust ;; # cargo rebuilds only what changed
    python | typescript)
      # Skipped when nothing it is built from changed since the last build.
      inputs=("examples/order/$language" sdk wit examples/order/build.sh guest-examples/python
        guest-examples/python-venv.sh guest-examples/stamp.sh)
      if ! "$stamp" fresh "$out/.inputs-$language" "${inputs[@]}"; then
        rm -f "$out/.inputs-$language"
        "build_$language"
        "$stamp" write "$out/.inputs-$language" "${inputs[@]}"
      fi
      ;;
    *) die "unknown language '$language' (known: rust python typescript)" ;;
  esac
done
