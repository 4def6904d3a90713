#!/bin/bash
# System calls of a whole `rundns` process for 20,000 UDP queries, with strace -c
# (docs/architecture.md, "Batched UDP I/O"). A count, not a timing.
#
#   devtools/load/count_syscalls.sh batched|python cached|forwarded OUTDIR
#
# batched: the compiled _mmsg extension (built); python: GLORYHOLE_NO_EXTENSIONS=1.
# cached: 100 names, answered from the cache; forwarded: 20,000 names, each forwarded.
# Everything on loopback: a fresh SQLite database in OUTDIR, devtools/load/fast_upstream.py
# as the upstream. The counts land in OUTDIR/strace.txt; prints the client's line.
set -eu
MODE=$1; WORKLOAD=$2; OUT=$(realpath -m "$3")
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
rm -rf "$OUT"; mkdir -p "$OUT"
export GLORYHOLE_DATA_DIR=$OUT PYTHONUNBUFFERED=1 GLORYHOLE_METRICS_PORT=0
if [ "$MODE" = python ]; then export GLORYHOLE_NO_EXTENSIONS=1; fi
if [ "$WORKLOAD" = cached ]; then NAMES=100; else NAMES=20000; fi
$PY manage.py migrate --noinput > "$OUT/migrate.log" 2>&1
$PY -m devtools.load.fast_upstream --port 0 > "$OUT/upstream.log" 2>&1 &
UPSTREAM=$!
for _ in $(seq 50); do grep -q "fast upstream on" "$OUT/upstream.log" && break; sleep 0.1; done
GLORYHOLE_UPSTREAMS=$(grep -o "127.0.0.1:[0-9]*" "$OUT/upstream.log" | head -1) \
    $PY manage.py rundns --host 127.0.0.1 --port 0 > "$OUT/rundns.log" 2>&1 &
ENGINE=$!
for _ in $(seq 100); do grep -q "listening on" "$OUT/rundns.log" && break; sleep 0.1; done
PORT=$(grep -o "listening on [^ ]*" "$OUT/rundns.log" | head -1 | rev | cut -d: -f1 | rev)
$PY -m devtools.load.udp_burst --port "$PORT" --count 200 --names 100 --suffix warm.test > /dev/null
strace -c -f -p "$ENGINE" -o "$OUT/strace.txt" 2> "$OUT/strace.err" &
STRACE=$!
sleep 1.5  # strace attaches to every thread
$PY -m devtools.load.udp_burst --port "$PORT" --count 20000 --burst 100 --names "$NAMES" \
    --suffix "$WORKLOAD$$.test"
sleep 0.5
kill -INT "$STRACE"; wait "$STRACE" || true
kill -TERM "$ENGINE"; wait "$ENGINE" || true
kill -TERM "$UPSTREAM"; wait "$UPSTREAM" 2>/dev/null || true
