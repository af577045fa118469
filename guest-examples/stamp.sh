#!/usr/bin/env bash
# Skips rebuilding guests whose sources did not change.
#
# Usage: stamp.sh fresh STAMP PATH...   exit 0 when STAMP holds the digest
#                                       of PATH... (nothing to rebuild)
#        stamp.sh write STAMP PATH...   record that digest in STAMP
#
# The digest covers every file git sees under PATH... (tracked, and
# untracked but not ignored), name and content, relative to the project
# root. Outside a git work tree there is no digest: nothing is ever fresh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
op="$1" stamp="$2"
shift 2

digest() {
  cd "$root"
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 1
  git ls-files -co --exclude-standard -z -- "$@" \
    | while IFS= read -r -d '' file; do
        if [ -f "$file" ]; then
          printf '%s %s\n' "$file" "$(sha256sum <"$file" | cut -d' ' -f1)"
        fi
      done \
    | sha256sum | cut -d' ' -f1
}

case "$op" in
  fresh)
    [ -f "$stamp" ] || exit 1
    now="$(digest "$@")" || exit 1
    [ "$now" = "$(cat "$stamp")" ]
    ;;
  write)
    if now="$(digest "$@")"; then
      echo "$now" >"$stamp"
    else
      rm -f "$stamp"
    fi
    ;;
  *)
    echo "stamp.sh: unknown operation '$op' (fresh or write)" >&2
    exit 2
    ;;
esac
