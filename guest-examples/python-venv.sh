#!/usr/bin/env bash
# The virtualenv with the pinned PyPI toolchains, shared by
# guest-examples/build.sh and examples/order/build.sh: creates it under
# target/toolchains/python when missing, installs the requirement files
# given, one build at a time (tests run both builds at once), and prints
# its bin directory.
#
# Usage: guest-examples/python-venv.sh REQUIREMENTS.txt...
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
toolchains="$root/target/toolchains"
venv="$toolchains/python"
die() { echo "python-venv.sh: $*" >&2; exit 1; }
mkdir -p "$toolchains"
requirements=()
for file in "$@"; do requirements+=(-r "$file"); done
(
  flock 9
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "cannot create a Python virtualenv (python3 -m venv; Debian: python3-venv)"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}" \
    || die "cannot install the PyPI toolchains ($*)"
) 9>"$toolchains/python.lock" >&2
echo "$venv/bin"
