#!/usr/bin/env bash
# API conformance: schemathesis (from PyPI, in a virtual environment under
# target/toolchains/) against a real `sandstep serve` on 127.0.0.1, driven
# by its own /v1/openapi.json, with a bounded budget. Checks: no server
# errors, status codes, content types and bodies as documented.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/toolchains/schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi
data=$(mktemp -d)
log="$data/serve.log"
# A secrets key, so that PUT /v1/secrets answers as documented (204).
SANDSTEP_SECRETS_KEY=$(printf %064d 7) target/release/sandstep serve --listen 127.0.0.1:0 --data-dir "$data/store" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
    url=$(sed -n 's/^sandstep listening on //p' "$log")
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { cat "$log"; echo "the server did not start" >&2; exit 1; }
# A module is raw wasm, which schemathesis cannot generate: uploads are
# checked by the test suite. scripts/schemathesis.toml: per-route settings.
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$url/v1/openapi.json" \
    --exclude-operation-id upload_module \
    --max-examples 25 \
    --max-time 150 \
    --seed 1
