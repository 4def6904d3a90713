#!/usr/bin/env bash
# Run a command against a throw-away PostgreSQL server on loopback.
#
#   devtools/pgtest.sh [command ...]     default: .venv/bin/python -m pytest
#
# Installs Debian's postgresql when its binaries are missing, initialises a cluster
# in a temporary directory, starts it on 127.0.0.1 on a free port (as the postgres
# user when run as root: initdb refuses root), runs the command with DATABASE_URL
# pointing at it, then stops the server and deletes the directory, also when the
# command fails or is interrupted. The exit status is the command's.
#
# PGTEST_KEEP=1 leaves the server running and prints how to stop it (for poking at
# it by hand); PGTEST_DURABLE=1 keeps fsync on (benchmarks and fault checks: with
# fsync off the numbers would flatter PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}

pg_bindir() {
    local found
    if found=$(command -v pg_ctl 2>/dev/null) && [ -x "$(dirname "$(readlink -f "$found")")/initdb" ]; then
        dirname "$(readlink -f "$found")"
        return 0
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

if ! BIN=$(pg_bindir); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "pgtest: PostgreSQL is not installed; run as root or: apt-get install -y postgresql" >&2
        exit 2
    fi
    echo "pgtest: installing PostgreSQL (apt-get install -y postgresql)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    BIN=$(pg_bindir) || { echo "pgtest: no initdb after installing postgresql" >&2; exit 2; }
fi

TMP=$(mktemp -d /tmp/gloryhole-pgtest.XXXXXX)
DATA=$TMP/data
LOG=$TMP/server.log
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# initdb and postgres refuse to run as root: give the cluster to the postgres user.
AS=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    chown postgres "$TMP"
    AS=(runuser -u postgres --)
fi

stop_server() {
    local status=$?
    trap - EXIT INT TERM
    if [ "${PGTEST_KEEP:-0}" = 1 ] && [ "$status" -eq 0 ]; then
        echo "pgtest: left running; stop with: ${AS[*]} $BIN/pg_ctl -D $DATA stop && rm -rf $TMP" >&2
        exit 0
    fi
    if [ -f "$DATA/postmaster.pid" ]; then
        "${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || "${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$LOG" ]; then
        echo "pgtest: last lines of the server log:" >&2
        tail -n 20 "$LOG" >&2 || true
    fi
    rm -rf "$TMP"
    exit "$status"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${AS[@]}" "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; exit 1; }

OPTIONS="-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c max_connections=200"
if [ "${PGTEST_DURABLE:-0}" != 1 ]; then
    # A test server: nothing in it must survive a power cut, so skip the disk flushes.
    OPTIONS="$OPTIONS -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
"${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -o "$OPTIONS" -w -t 60 start >/dev/null
"${AS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres gloryhole

export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/gloryhole"
# For scripts that stop and start the server themselves (devtools/load/faults.py).
export PGTEST_BIN=$BIN PGTEST_DATA=$DATA PGTEST_LOG=$LOG PGTEST_OPTIONS=$OPTIONS
export PGTEST_AS="${AS[*]}"
echo "pgtest: PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $DATA)" >&2

if [ $# -eq 0 ]; then
    set -- "$PY" -m pytest
fi
# Not exec: the trap must run after the command.
"$@"
