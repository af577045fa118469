#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests: `start` installs PostgreSQL
# from the OS packages when pg_ctl is not found, creates a cluster in a
# temporary directory (as an unprivileged user when run as root), listening
# only on a free loopback port, and prints the shell lines that export its
# URL (SANDSTEP_TEST_POSTGRES) and directory (SANDSTEP_TEST_PGDATA);
# `stop DIR` stops it and removes the directory.
set -euo pipefail

bindir() {
    if command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$found" ]; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
        found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$found"
}

# Runs a command as the cluster's owner: ourselves, or `postgres` (else
# `nobody`) when we are root, which PostgreSQL refuses to run as.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        local user=postgres
        id "$user" >/dev/null 2>&1 || user=nobody
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "${1:-}" in
start)
    bin=$(bindir)
    dir=$(mktemp -d /tmp/sandstep-pg.XXXXXX)
    chmod 755 "$dir"
    mkdir "$dir/data"
    if [ "$(id -u)" -eq 0 ]; then
        user=postgres
        id "$user" >/dev/null 2>&1 || user=nobody
        chown "$user" "$dir/data"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U sandstep --auth=trust -E UTF8 --no-instructions >/dev/null
    port=$(free_port)
    # Tests open many pools at once; durability of the test cluster itself
    # is not under test (fsync off), Sandstep's commits still wait for it.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/log" -w -o \
        "-c listen_addresses=127.0.0.1 -p $port -k $dir/data -c max_connections=1000 -c fsync=off -c shared_buffers=128MB" \
        start >/dev/null
    echo "export SANDSTEP_TEST_POSTGRES=postgres://sandstep@127.0.0.1:$port/postgres"
    echo "export SANDSTEP_TEST_PGDATA=$dir"
    ;;
stop)
    dir=${2:?usage: postgres.sh stop DIR}
    as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: scripts/postgres.sh start | stop DIR" >&2
    exit 2
    ;;
esac
