#!/usr/bin/env bash
# Builds every guest example from source into target/guests/<language>/ at
# the project root.
#
# Usage: guest-examples/build.sh [language...]
#   languages: rust javascript typescript python c go zig assemblyscript
#   (default: all of them)
#
# Installs what each language needs when it is missing: Rust wasm targets
# (rustup), Debian packages (clang, lld, wasi-libc; Go 1.23 from
# bookworm-backports), npm packages (at the versions of each example's lock file),
# PyPI packages (componentize-py, ziglang, pinned, in a virtualenv under
# target/toolchains/). A toolchain that cannot be installed is an error,
# never a silent skip.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$root/target/guests"
toolchains="$root/target/toolchains"
all=(rust javascript typescript python c go zig assemblyscript)
languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=("${all[@]}")

say() { echo "build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# Debian packages, installed only when a command is missing.
apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  command -v apt-get >/dev/null || die "cannot install $*: apt-get is not available; install them by hand"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "cannot install Debian packages: $*"
}

apt_update() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
}

python_tool() {
  # A virtualenv with the pinned PyPI toolchains (componentize-py, ziglang).
  "$here/python-venv.sh" "$here/python/requirements.txt" "$here/zig/requirements.txt"
}

# Installs an example's npm packages at the versions of its lock file.
# (`npm ci` refuses componentize-js's lock file: npm 11 reports jco's optional
# packages for other platforms as missing from it. `npm install --no-save`
# installs the locked versions and leaves the lock file alone.)
npm_install() {
  command -v npm >/dev/null || die "npm is not installed (Node.js 20 or newer is needed)"
  (cd "$1" && npm install --no-save --silent --no-audit --no-fund) || die "npm install failed in ${1#"$root"/}"
}

# wit-bindgen's C generator and wit-component's `component new`, as a small
# helper built from crates (no wit-bindgen-cli or wasm-tools install).
guest_tools() {
  cargo build --quiet --release --locked --manifest-path "$here/tools/Cargo.toml" || die "cannot build guest-tools"
  echo "$here/tools/target/release/guest-tools"
}

build_rust() {
  rustup target add wasm32-wasip2 wasm32-wasip1 >/dev/null
  local dir="$here/rust"
  cargo build --quiet --release --manifest-path "$dir/Cargo.toml" --target wasm32-wasip2 \
    -p echo -p hello -p transform -p wordcount -p fetch-json -p read-file -p chain-flow
  cargo build --quiet --release --manifest-path "$dir/Cargo.toml" --target wasm32-wasip1 -p stats-cmd
  for step in echo hello transform wordcount; do
    cp "$dir/target/wasm32-wasip2/release/$step.wasm" "$out/rust/$step.wasm"
  done
  cp "$dir/target/wasm32-wasip1/release/stats-cmd.wasm" "$out/rust/stats-cmd.wasm"
  cp "$dir/target/wasm32-wasip2/release/fetch_json.wasm" "$out/rust/fetch-json.wasm"
  cp "$dir/target/wasm32-wasip2/release/read-file.wasm" "$out/rust/read-file.wasm"
  cp "$dir/target/wasm32-wasip2/release/chain_flow.wasm" "$out/rust/chain-flow.wasm"
}

build_javascript() {
  npm_install "$here/javascript"
  (cd "$here/javascript" && npm run --silent build && npm run --silent build-fetch) || die "componentize-js failed"
  mv "$here/javascript/filter-orders.wasm" "$out/javascript/filter-orders.wasm"
  mv "$here/javascript/fetch-json.wasm" "$out/javascript/fetch-json.wasm"
}

build_typescript() {
  npm_install "$here/typescript"
  (cd "$here/typescript" && npm run --silent build) || die "tsc or componentize-js failed"
  mv "$here/typescript/rank-customers.wasm" "$out/typescript/rank-customers.wasm"
}

build_python() {
  local bin
  bin="$(python_tool)"
  (cd "$here/python" && "$bin/componentize-py" -d ../../wit/step.wit -w step componentize stats --stub-wasi \
    -o "$out/python/stats.wasm" >/dev/null) || die "componentize-py failed"
}

build_c() {
  # A C compiler that links for wasm32-wasi (clang, lld, wasi-libc, the
  # wasm32 compiler runtime), installed when a probe program does not build.
  local probe="$out/c/probe.wasm"
  if ! printf 'int main(void) { return 0; }\n' | clang --target=wasm32-wasi -x c - -o "$probe" 2>/dev/null; then
    apt_update
    apt_install clang lld wasi-libc libclang-rt-dev-wasm32
  fi
  rm -f "$probe"
  local tools gen="$out/c/gen" dir="$here/c"
  tools="$(guest_tools)"
  "$tools" c-bindings "$root/wit/step.wit" step "$gen"
  clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -mexec-model=reactor -Wl,--strip-debug -I"$gen" -I"$dir" \
    -o "$out/c/histogram.core.wasm" "$dir/histogram.c" "$dir/json.c" "$gen/step.c" "$gen/step_component_type.o"
  "$tools" component-new "$out/c/histogram.core.wasm" "$out/c/histogram.wasm"
  rm "$out/c/histogram.core.wasm"
  clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-debug -o "$out/c/top-words.wasm" \
    "$dir/top-words.c" "$dir/json.c"
}

# A Go that can target wasip1 (1.21 or newer), installing Go 1.23 from
# Debian's bookworm-backports when there is none.
go_bin() {
  local candidate
  for candidate in "$(command -v go || true)" /usr/lib/go-1.2[1-9]/bin/go; do
    [ -x "$candidate" ] || continue
    if "$candidate" version | grep -Eq 'go1\.(2[1-9]|[3-9][0-9])'; then
      echo "$candidate"
      return
    fi
  done
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo -n)
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | "${sudo[@]}" tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null \
      || die "cannot add Debian bookworm-backports (needed for Go >= 1.21)"
  fi
  apt_update
  apt_install golang-1.23-go
  echo /usr/lib/go-1.23/bin/go
}

build_go() {
  local go
  go="$(go_bin)"
  (cd "$here/go" && GOOS=wasip1 GOARCH=wasm "$go" build -trimpath -o "$out/go/invoice.wasm" .) || die "go build failed"
}

build_zig() {
  local bin tools
  bin="$(python_tool)"
  tools="$(guest_tools)"
  (cd "$out/zig" && "$bin/python" -m ziglang build-exe -target wasm32-wasi -O ReleaseSmall \
    -femit-bin="$out/zig/checksum.wasm" "$here/zig/checksum.zig" \
    && "$bin/python" -m ziglang build-exe -target wasm32-freestanding -O ReleaseSmall -fno-entry -rdynamic \
      -femit-bin="$out/zig/checksum-step.core.wasm" "$here/zig/checksum-step.zig") || die "zig build-exe failed"
  "$tools" component-new "$out/zig/checksum-step.core.wasm" "$out/zig/checksum-step.wasm" "$root/wit/step.wit" step
  rm -f "$out/zig/"*.o "$out/zig/checksum-step.core.wasm"
}

build_assemblyscript() {
  npm_install "$here/assemblyscript"
  (cd "$here/assemblyscript" && npm run --silent build) || die "asc failed"
  mv "$here/assemblyscript/format-money.wasm" "$out/assemblyscript/format-money.wasm"
}

for language in "${languages[@]}"; do
  case " ${all[*]} " in
    *" $language "*) ;;
    *) say "unknown language '$language' (known: ${all[*]})"; exit 2 ;;
  esac
  mkdir -p "$out/$language"
  # Cargo rebuilds Rust only when needed; the others are skipped when
  # nothing they are built from changed since the last build.
  stamp="$out/$language/.inputs"
  inputs=("guest-examples/$language" wit guest-examples/tools guest-examples/build.sh guest-examples/python-venv.sh
    guest-examples/stamp.sh)
  if [ "$language" != rust ] && "$here/stamp.sh" fresh "$stamp" "${inputs[@]}"; then
    say "$language guests in ${out#"$root"/}/$language/ are up to date"
    continue
  fi
  rm -f "$stamp"
  "build_$language"
  [ "$language" = rust ] || "$here/stamp.sh" write "$stamp" "${inputs[@]}"
  say "built $language guests into ${out#"$root"/}/$language/"
done
