"""Disk space the query log takes per million rows on SQLite (``make bench-disk``).

    python -m devtools.bench.disk [--rows 1000000] [--days 7] [--workload home many]

Writes --rows entries through the engine's own writer (``QueryLogWriter``: rows plus the
dashboard rollups, batches of 2,000, the settings of gloryhole_site/env.py) into a
freshly migrated throw-away SQLite file, timestamps spread evenly over --days (the
default retention is 7 days, so that is what a database holds at most). Then:

- each table with its indexes, in bytes (SQLite's ``dbstat``), and per row;
- the database file, after ``PRAGMA wal_checkpoint(TRUNCATE)``;
- the largest WAL file seen after any batch (its bound is the checkpoint interval,
  10,000 pages of 4 KiB plus frame headers, ~40 MiB, plus at most one transaction).

Workloads: ``home``: 5,000 names with Zipf-like popularity, 30 clients (a household);
``many``: 200,000 names drawn uniformly, 200 clients (most rows bring a new name per
hour, which is what makes the per-hour domain rollup as large as it gets).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from devtools.bench.common import WRITE_BATCH, migrated_sqlite_template

MIB = 2**20


def entries(workload: str, n: int, days: float, seed: int = 11):
    """The entries of one workload, in time order, as the engine would hand them over."""
    from dnsengine.core.entry import QueryLogEntry

    rng = random.Random(seed)
    if workload == "home":
        names = [f"d{i}.{rng.choice(('cdn', 'api', 'www', 'img'))}.example{i % 400}.com" for i in range(5000)]
        weights = [1 / (i + 1) for i in range(len(names))]
        clients = [f"192.168.1.{i}" for i in range(2, 32)]
    else:
        names = [f"u{i}.miss{i % 101}.example" for i in range(200_000)]
        weights = None
        clients = [f"10.0.{i // 50}.{i % 50}" for i in range(200)]
    statuses = ("forwarded", "cached", "blocked", "local", "error")
    start = time.time() - days * 86400
    step = days * 86400 / n
    chunk = 10_000
    for base in range(0, n, chunk):
        k = min(chunk, n - base)
        picked = rng.choices(names, weights=weights, k=k)
        kinds = rng.choices(statuses, weights=(50, 25, 20, 3, 2), k=k)
        for i in range(k):
            status = kinds[i]
            yield QueryLogEntry(
                timestamp=start + (base + i) * step,
                client=rng.choice(clients),
                protocol="udp",
                domain=picked[i],
                qtype="A" if i % 4 else "AAAA",
                rcode="NXDOMAIN" if status == "blocked" else "NOERROR",
                status=status,
                rule="list:StevenBlack" if status == "blocked" else "",
                upstream="1.1.1.1:53" if status == "forwarded" else "",
                duration_us=rng.randrange(30, 30000),
            )


def measure(template: Path, work: Path, workload: str, rows: int, days: float) -> dict:
    from django.db import connections

    from querylog.logger.writer import QueryLogWriter

    path = work / f"{workload}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, path)
    connections["default"].settings_dict["NAME"] = str(path)
    writer = QueryLogWriter("bench-disk")
    wal = Path(f"{path}-wal")
    largest_wal = 0
    batch = []
    started = time.perf_counter()
    for entry in entries(workload, rows, days):
        batch.append(entry)
        if len(batch) == WRITE_BATCH:
            writer(batch)
            batch = []
            largest_wal = max(largest_wal, wal.stat().st_size if wal.exists() else 0)
    if batch:
        writer(batch)
    took = time.perf_counter() - started
    connections.close_all()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        tables: dict[str, int] = {}
        for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            tables[table] = tables.get(table, 0) + size
        counts = {
            t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # names from sqlite_master
            for t in tables
            if t.startswith("querylog_")
        }
        free = db.execute("PRAGMA freelist_count").fetchone()[0] * page
    db.close()
    return {
        "workload": workload,
        "rows": rows,
        "seconds": took,
        "file": path.stat().st_size,
        "largest_wal": largest_wal,
        "tables": tables,
        "counts": counts,
        "free": free,
    }


def report(result: dict) -> None:
    rows = result["rows"]
    per_million = 1_000_000 / rows
    print(f"### {result['workload']}: {rows:,} rows ({result['seconds']:.0f} s to write)")
    print()
    print("| table (with its indexes) | rows | MiB | MiB per million log rows |")
    print("| --- | ---: | ---: | ---: |")
    ours = {t: s for t, s in result["tables"].items() if t.startswith("querylog_")}
    for table, size in sorted(ours.items(), key=lambda kv: -kv[1]):
        if size >= 64 * 1024:
            count = result["counts"].get(table, 0)
            print(f"| `{table}` | {count:,} | {size / MIB:.1f} | {size * per_million / MIB:.1f} |")
    total = sum(ours.values())
    print(f"| **query log, all of it** | | **{total / MIB:.1f}** | **{total * per_million / MIB:.1f}** |")
    print()
    print(
        f"- database file after a TRUNCATE checkpoint: {result['file'] / MIB:.1f} MiB "
        f"({result['file'] * per_million / MIB:.1f} MiB per million rows; the rest of the schema and "
        f"{result['free'] / MIB:.1f} MiB of free pages included)"
    )
    print(f"- largest WAL seen after a batch: {result['largest_wal'] / MIB:.1f} MiB")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0, help="time the rows are spread over (default 7)")
    parser.add_argument("--workload", nargs="+", choices=("home", "many"), default=["home", "many"])
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gloryhole-bench-disk-"))
    try:
        template = migrated_sqlite_template(tmp)
        for workload in args.workload:
            report(measure(template, tmp, workload, args.rows, args.days))
        print(f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}")  # fmt: skip
        print(
            f"- command: python -m devtools.bench.disk --rows {args.rows} --days {args.days:g} "
            f"--workload {' '.join(args.workload)}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
