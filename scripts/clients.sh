#!/usr/bin/env bash
# The Python and TypeScript clients (clients/): their linters and type
# checks, and their tests, which start a real `sandstep serve` (the release
# binary) and push the Rust example guests. Run by scripts/test.sh after
# the build; by hand: scripts/clients.sh [python|typescript]...
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export SANDSTEP_BIN="${SANDSTEP_BIN:-$root/target/release/sandstep}"
[ -x "$SANDSTEP_BIN" ] || cargo build --release --locked --bin sandstep
guest-examples/build.sh rust >&2

python() {
  local venv="$root/target/toolchains/python-client"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "clients/python[test]"
  (
    cd clients/python
    "$venv/bin/ruff" check .
    "$venv/bin/ruff" format --check .
    "$venv/bin/mypy"
    "$venv/bin/pytest" -q tests
  )
}

typescript() {
  (
    cd clients/typescript
    npm ci --no-audit --no-fund --loglevel=error
    npm run --silent check
    npm test
  )
}

for client in "${@:-python typescript}"; do
  for one in $client; do "$one"; done
done
