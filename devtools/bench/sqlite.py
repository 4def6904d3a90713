"""SQLite settings for the query log: CPU per row as the table grows (``make bench-sqlite``).

    python -m devtools.bench.sqlite [--rows 400000] [--batch 2000] [--runs 1]

Inserts --rows QueryLog rows in batches of --batch (one multi-row INSERT per
~90 rows, one transaction per batch, as the writer does) into a freshly migrated
throw-away SQLite file, with SQLite's default page cache and checkpoint interval
and then with the ones gloryhole_site/env.py sets. Names are drawn from 200,000
(as in `make loadtest`, most rows bring a new name), so inserts land at random
places in the domain and client indexes and each batch dirties about a page per
row: that is what the page cache and the checkpoint interval are about.

Prints CPU seconds (this process: SQLite runs in it) and rows/s per variant.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from devtools.bench.common import QUERYLOG_COLUMNS, migrated_sqlite_template, querylog_rows

VARIANTS = {
    "SQLite defaults (2 MiB cache, checkpoint every 1,000 pages)": [],
    "gloryhole (64 MiB cache, checkpoint every 10,000 pages)": [
        "PRAGMA cache_size=-65536",
        "PRAGMA wal_autocheckpoint=10000",
    ],
}


def run(template: Path, work: Path, pragmas: list[str], data: list[tuple], batch: int) -> tuple[float, float]:
    path = work / "run.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        (work / f"run.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(template, path)
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *pragmas]:
        conn.execute(pragma)
    one = "(" + ", ".join("?" * 11) + ")"
    per = 90  # rows per statement: 990 parameters, under SQLite's old 999 limit
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(0, len(data), batch):
        chunk = data[start : start + batch]
        conn.execute("BEGIN IMMEDIATE")
        for i in range(0, len(chunk), per):
            part = chunk[i : i + per]
            conn.execute(
                f"INSERT INTO querylog_querylog ({QUERYLOG_COLUMNS}) VALUES {', '.join([one] * len(part))}",
                [v for row in part for v in row],
            )
        conn.execute("COMMIT")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    conn.close()
    return cpu, len(data) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=2000, help="rows per transaction (the writer's default)")
    parser.add_argument("--runs", type=int, default=1, help="runs per variant, interleaved; medians printed")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gloryhole-bench-sqlite-"))
    try:
        template = migrated_sqlite_template(tmp)
        data = querylog_rows(args.rows)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.runs):
            for name, pragmas in VARIANTS.items():
                results[name].append(run(template, tmp, pragmas, data, args.batch))
        print(
            f"### {args.rows:,} QueryLog rows into an empty table, {args.batch:,} per transaction, {args.runs} run(s)"
        )
        print()
        print("| settings | CPU s (median) | rows/s (median) |")
        print("| --- | ---: | ---: |")
        for name, runs in results.items():
            cpu = statistics.median(r[0] for r in runs)
            rate = statistics.median(r[1] for r in runs)
            print(f"| {name} | {cpu:.1f} | {rate:,.0f} |")
        print()
        print(f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}")  # fmt: skip
        print(f"- command: python -m devtools.bench.sqlite --rows {args.rows} --batch {args.batch} --runs {args.runs}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
