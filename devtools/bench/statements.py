"""Query-log writes on SQLite with batches of every size (``make bench-statements``).

    python -m devtools.bench.statements [--rows 200000] [--runs 3] [--batch N]

At 10k QPS a writer takes whatever is queued when it wakes, so batch sizes vary
from one batch to the next. This writes --rows QueryLog rows (with the dashboard
rollups, as the engine does) through the engine's own QueryLogWriter into a fresh
migrated SQLite file, in batches of random sizes from 1 to 2,000 (seeded: every
variant gets the same sizes; --batch N makes every batch N rows), two ways:

- one multi-row INSERT per batch (up to SQLite's variable limit), the statement
  text different for every size;
- pieces of querylog.db.SQLITE_CHUNK_ROWS rows and a rest in power-of-two
  pieces, so a table has about a dozen statements, each compiled once per
  connection (what the writer does; a full batch is still one statement).

Prints, per variant, the median of --runs runs (run order interleaved): CPU
seconds of this process (SQLite runs in it), rows/s, and SQLite's heap at the end
(sqlite3_memory_used: page cache plus the connection's cached statements).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from devtools.bench.common import miss_entries, setup_django


def _sizes(total: int, fixed: int = 0) -> list[int]:
    rng = random.Random(5)
    sizes = []
    while total > 0:
        size = min(total, fixed or rng.randint(1, 2000))
        sizes.append(size)
        total -= size
    return sizes


def run(template: Path, tmp: Path, entries, sizes: list[int], reuse: bool) -> tuple[float, float, float]:
    from django.db import connections

    from dnsengine.runtime.memory import read_memory
    from querylog.db import sqlite_values_sql
    from querylog.logger.writer import QueryLogWriter

    connections.close_all()
    path = tmp / "run.sqlite3"
    for old in tmp.glob("run.sqlite3*"):
        old.unlink()
    shutil.copyfile(template, path)
    connections["default"].settings_dict["NAME"] = str(path)
    sqlite_values_sql.cache_clear()
    writer = QueryLogWriter(rollups=True, reuse_sqlite_statements=reuse)
    cpu, wall = time.process_time(), time.perf_counter()
    i = 0
    for size in sizes:
        writer(entries[i : i + size])
        i += size
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    heap = read_memory().sqlite_bytes or 0
    connections.close_all()
    return cpu, len(entries) / wall, heap / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="every batch this size (default: random, 1-2,000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gloryhole-bench-statements-") as tmp_name:
        tmp = Path(tmp_name)
        setup_django(tmp, quiet_querylog=True)  # migrated into tmp/bench.sqlite3, copied for each run
        template = tmp / "bench.sqlite3"
        entries = miss_entries(args.rows)
        sizes = _sizes(args.rows, args.batch)
        variants = {
            "one statement per batch (before)": False,
            "reused pieces (now)": True,
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, reuse in variants.items():
                results[name].append(run(template, tmp, entries, sizes, reuse))
    what = f"{args.batch:,} rows" if args.batch else "1-2,000 rows"
    print(
        f"### {args.rows:,} rows with rollups, {len(sizes)} batches of {what}, "
        f"median of {args.runs} runs (interleaved)\n"
    )
    print("| variant | CPU s | rows/s | SQLite heap at the end, MiB |")
    print("| --- | --- | --- | --- |")
    for name, runs in results.items():
        cpu, rate, heap = (statistics.median(r[k] for r in runs) for k in range(3))
        print(f"| {name} | {cpu:.1f} | {rate:,.0f} | {heap:.0f} |")
    print(
        f"\n- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        f"\n- command: `python -m devtools.bench.statements --rows {args.rows} --runs {args.runs}"
        f"{f' --batch {args.batch}' if args.batch else ''}`"
    )


if __name__ == "__main__":
    main()
