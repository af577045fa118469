#!/usr/bin/env bash
# The resident memory of a `sandstep serve` process holding 10,000 runs
# paused on waits, as a user's server would: no benchmark client in the
# process (`bench waits` measures its own process, server and clients
# together). Each round starts 10,000 runs of a wait-then-step workflow in
# batches, waits until all are paused and the memory settled, reads the
# server's /proc status, then posts one event per run and waits until none
# is paused. Prints each round and the median (min, max) of 5.
#
#   scripts/paused-rss.sh [BINARY]     (default target/release/sandstep)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/sandstep}
echo_wasm=target/guests/rust/echo.wasm
[ -f "$echo_wasm" ] || guest-examples/build.sh rust >/dev/null
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
base=http://127.0.0.1:$port
until curl -sf "$base/healthz" >/dev/null; do sleep 0.1; done
curl -sf -XPOST "$base/v1/modules?name=echo" -H 'content-type: application/wasm' --data-binary @"$echo_wasm" >/dev/null
curl -sf -XPUT "$base/v1/workflows/approval" -H 'content-type: application/yaml' --data-binary @- >/dev/null <<'YAML'
name: approval
steps:
  - id: wait
    wait: { event: "go.{{ inputs.key }}", timeout: 1h }
  - id: done
    module: echo
    input: "{{ steps.wait.output }}"
output: "{{ steps.done.output }}"
YAML
python3 - "$base" "$pid" <<'PY'
import concurrent.futures, json, statistics, sys, time, urllib.request
base, pid = sys.argv[1], sys.argv[2]
RUNS, BATCH, ROUNDS = 10_000, 1_000, 5

def post(path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return answer.read()

def paused():
    with urllib.request.urlopen(base + "/metrics") as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith('sandstep_runs{status="paused"} '):
                return int(float(line.split()[1]))
    return 0

def rss():
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields

def settled():
    last = rss()
    for _ in range(20):
        time.sleep(0.25)
        now = rss()
        if abs(now["VmRSS"] - last["VmRSS"]) < 1:
            return now
        last = now
    return last

def until(check):
    while not check():
        time.sleep(0.1)

figures = []
for round in range(ROUNDS):
    for b in range(RUNS // BATCH):
        post("/v1/workflows/approval/runs/batch", {"runs": [{"input": {"key": f"{round}.{b}.{i}"}} for i in range(BATCH)]})
    until(lambda: paused() >= RUNS)
    figure = settled()
    figures.append(figure)
    print(f"round {round + 1}: {RUNS} runs paused: RSS {figure['VmRSS']:.0f} MiB "
          f"(anonymous {figure['RssAnon']:.0f}, file {figure['RssFile']:.0f})", flush=True)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: post("/v1/events", {"topic": f"go.{key}"}),
                      [f"{round}.{b}.{i}" for b in range(RUNS // BATCH) for i in range(BATCH)]))
    until(lambda: paused() == 0)

def spread(name):
    values = sorted(f[name] for f in figures)
    return f"{statistics.median(values):.0f} (min {values[0]:.0f}, max {values[-1]:.0f})"
print(f"sandstep serve, {RUNS} runs paused, median of {ROUNDS} rounds: RSS {spread('VmRSS')} MiB; "
      f"anonymous {spread('RssAnon')} MiB; file pages (binary, mapped database) {spread('RssFile')} MiB")
PY
