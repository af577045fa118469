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
# Real runs for the stateful phase to find: one that completes, one that
# pauses on a wait (5 s, so that a generated `?wait=300s` answers within
# schemathesis's 10 s), one that fails (a running or failed run's `output`
# is null, which the schema must allow).
echo_wasm=target/guests/rust/echo.wasm
[ -f "$echo_wasm" ] || guest-examples/build.sh rust
call() {
    local method=$1 path=$2 type=$3 body=$4 expect=$5 status
    status=$(curl -s -o "$data/answer" -w '%{http_code}' -X "$method" -H "content-type: $type" --data-binary "$body" "$url$path")
    [ "$status" = "$expect" ] || { cat "$data/answer"; echo "$method $path answered $status, not $expect" >&2; exit 1; }
}
call POST '/v1/modules?name=echo&tag=v1' application/wasm "@$echo_wasm" 201
call PUT /v1/workflows/done application/yaml $'name: done\nsteps:\n  - { id: s, module: "echo:v1", input: { x: 1 } }\n' 201
call PUT /v1/workflows/waiting application/yaml $'name: waiting\nsteps:\n  - { id: w, wait: { event: conformance.go, timeout: 5s } }\n' 201
call PUT /v1/workflows/failing application/yaml $'name: failing\nsteps:\n  - { id: s, module: "echo:v1", input: { x: 1 }, limits: { fuel: 1 } }\n' 201
call POST '/v1/workflows/done/runs?wait=10s' application/json '{"input": {}}' 201
call POST /v1/workflows/waiting/runs application/json '{"input": {}}' 201
call POST '/v1/workflows/failing/runs?wait=10s' application/json '{"input": {}}' 201
grep -q '"status":"failed"' "$data/answer" || { cat "$data/answer"; echo "the failing run did not fail" >&2; exit 1; }
# A module is raw wasm, which schemathesis cannot generate: uploads are
# checked by the test suite. scripts/schemathesis.toml: per-route settings.
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$url/v1/openapi.json" \
    --exclude-operation-id upload_module \
    --max-examples 25 \
    --max-time 150 \
    --seed 1
