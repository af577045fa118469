#!/usr/bin/env bash
# Runs `sandstep bench server --json` and fails when a figure's ratio to
# its floor is more than 1.5 times the ratio recorded in
# docs/performance.md (a noisy machine does not fail it; a change that
# doubles a step's cost does), or when a capability declared and not used
# slows the durable figure by more than 10%. Run it by hand, with no build running,
# before submitting a change to the executor, the writer or the store.
# Not run in CI.
#
#   scripts/bench-check.sh            # builds, runs, compares
#   scripts/bench-check.sh REPORT     # compares a saved --json report
set -euo pipefail
cd "$(dirname "$0")/.."

report=${1:-}
if [[ -z "$report" ]]; then
    cargo build --release --quiet
    guest-examples/build.sh rust >/dev/null
    report=$(mktemp)
    trap 'rm -f "$report"' EXIT
    target/release/sandstep bench server --json >"$report"
fi

python3 - "$report" docs/performance.md <<'PY'
import json, re, sys

report = json.load(open(sys.argv[1]))
recorded = {}
for line in open(sys.argv[2]):
    # | `durable_completions_per_s` | ... | 4.55x |
    m = re.match(r"^\|\s*`(\w+)`\s*\|.*\|\s*([0-9.]+)x\s*\|\s*$", line)
    if m:
        recorded[m.group(1)] = float(m.group(2))
if not recorded:
    sys.exit("bench-check: no recorded ratios found in docs/performance.md")

failed = False
for key, ratio in sorted(recorded.items()):
    figure = report.get(key)
    if not isinstance(figure, dict) or "vs_floor" not in figure:
        print(f"bench-check: {key}: not in the report")
        failed = True
        continue
    now = figure["vs_floor"]["median"]
    verdict = "ok" if now <= 1.5 * ratio else "SLOWER"
    failed |= verdict != "ok"
    print(f"{key:30} {now:6.2f}x its floor (recorded {ratio:.2f}x, limit {1.5 * ratio:.2f}x)  {verdict}")
# A capability a workflow declares and does not use must cost nothing
# measurable: its durable figure within 10% of the plain chain's (median
# of the rounds, each against the plain chain of the same round).
for line in report.get("unused_capabilities", []):
    now = line["vs_plain"]["median"]
    verdict = "ok" if now >= 0.9 else "COSTS"
    failed |= verdict != "ok"
    print(f"unused {line['capability']:23} {now:6.2f}x the plain chain (limit 0.90x)  {verdict}")
sys.exit(1 if failed else 0)
PY
