"""Query log on PostgreSQL (``make bench-pg``): writer rows/s by method and workers, and retention's cost.

    python -m devtools.bench.querylog_pg --postgres postgres://user@127.0.0.1:5432/db [--rows 40000] [--runs 3]

Works in a database of its own, ``<db>_bench``, created (and migrated) on the given
server and dropped at the end; never touches the named database itself. ``make
bench-pg`` starts a throw-away server for it (devtools/pgtest.sh, fsync on).

1. Writers: the pool's sustained rate (entries queued first, then the writers
   started) for a multi-row INSERT ("values"), COPY ("copy") and the ORM's
   bulk_create, with 1, 2 and 4 writers, with and without rollups, and with two
   busy listener-like threads taking the GIL. Tables are truncated before each run;
   configurations are interleaved run by run, medians printed.
2. Retention: a table of --retention-rows rows over 8 days; querylog_purge of the
   oldest day in batches (time per batch, rows/s, writer rows/s while it runs),
   the dead tuples it leaves; against that, dropping one day's partition of a
   partitioned copy of the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from urllib.parse import urlparse, urlunparse

from devtools.bench.common import WRITE_BATCH, BusyListeners, home_entries, median, setup_django

BENCH_SUFFIX = "_bench"
PURGE_PAUSE = 0.05  # RetentionThread's pause between batches


def _bench_database(url: str) -> str:
    """Create <db>_bench on the server, point Django at it, migrate; returns its URL."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"--postgres wants a postgres:// URL, not {url!r}")
    name = parsed.path.lstrip("/") + BENCH_SUFFIX
    bench_url = urlunparse(parsed._replace(path=f"/{name}"))
    setup_django(database=url, migrate=False)
    from django.db import connection

    with connection.cursor() as cursor:  # autocommit: CREATE DATABASE cannot run in a transaction
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    connection.settings_dict["NAME"] = name
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("querylog").setLevel(logging.ERROR)
    return bench_url


def _drop_bench_db() -> None:
    from django.db import connection, connections

    name = connection.settings_dict["NAME"]
    if not name.endswith(BENCH_SUFFIX):
        return
    connections.close_all()
    connection.settings_dict["NAME"] = name[: -len(BENCH_SUFFIX)]
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def _truncate() -> None:
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE querylog_querylog, querylog_queryrollup, querylog_domainrollup, querylog_clientrollup "
            "RESTART IDENTITY"
        )
        cursor.execute("CHECKPOINT")  # so one run's dirty pages are not flushed during the next
    connections.close_all()


def run_pool(entries, *, workers: int, method: str, rollups: bool) -> float:
    from querylog.logger.pool import QueryLogger
    from querylog.logger.writer import QueryLogWriter
    from querylog.models import QueryLog

    _truncate()
    logger = QueryLogger(
        len(entries) + 1, workers, WRITE_BATCH, 0.5, writer=QueryLogWriter(rollups=rollups, method=method)
    )
    for e in entries:  # queued before the writers start: measures sustained write capacity
        logger.log_async(e)
    started = time.perf_counter()
    logger.start()
    report = logger.close(timeout=600)
    elapsed = time.perf_counter() - started
    if report.written != len(entries) or QueryLog.objects.count() != len(entries):
        raise SystemExit(f"bench: wrote {report.written} of {len(entries)} ({method}, {workers} workers)")
    return len(entries) / elapsed


# --- retention ---------------------------------------------------------------------------


def _fill(table: str, rows: int, days: int) -> None:
    """``rows`` synthetic rows spread evenly over the last ``days`` days, by COPY."""
    from django.db import connection, transaction

    from querylog.db import COLUMNS, execute_copy
    from querylog.logger.writer import QueryLogWriter

    _, build = QueryLogWriter(rollups=False, method="copy")._prepare()
    now = time.time()
    span = days * 86400
    template = home_entries(50_000)
    columns = ", ".join(COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    for start in range(0, rows, 50_000):
        chunk = template[: min(50_000, rows - start)]
        for i, e in enumerate(chunk):
            e.timestamp = now - span + (start + i) * span / rows
        with transaction.atomic():
            execute_copy(connection, f"{table} ({columns})", build(chunk))
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("CHECKPOINT")


def _dead_tuples(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", [table])
        return cursor.fetchone()[0]


class _TimedCursorBatches:
    """Times each DELETE of querylog_purge by wrapping the connection's execute."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if sql.startswith("DELETE"):
                self.seconds.append(time.perf_counter() - started)


def bench_retention(rows: int, batch: int, writer_rows: int) -> dict[str, object]:
    from django.db import connection, connections

    from querylog.retention import querylog_purge

    days = 8
    _truncate()
    _fill("querylog_querylog", rows, days)
    out: dict[str, object] = {"rows": rows, "batch": batch}

    # The alternative, built first: the same rows in a table partitioned by day, the
    # oldest partition holding exactly the rows the purge below deletes.
    start = datetime.fromtimestamp(int(time.time()) - days * 86400 + 86400, UTC) - timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_part")
        cursor.execute(
            "CREATE TABLE bench_part (LIKE querylog_querylog INCLUDING DEFAULTS) PARTITION BY RANGE (timestamp)"
        )
        cursor.execute(
            "CREATE TABLE bench_part_old PARTITION OF bench_part FOR VALUES FROM (MINVALUE) TO (%s)",
            [start + timedelta(days=1)],
        )
        for d in range(1, days + 1):
            lo, hi = start + timedelta(days=d), start + timedelta(days=d + 1)
            cursor.execute(
                f"CREATE TABLE bench_part_{d} PARTITION OF bench_part FOR VALUES FROM (%s) TO (%s)", [lo, hi]
            )
        cursor.execute("CREATE INDEX ON bench_part (timestamp)")
        cursor.execute("INSERT INTO bench_part SELECT * FROM querylog_querylog")
        cursor.execute("VACUUM ANALYZE bench_part")
        cursor.execute("CHECKPOINT")

    # Writers alone, then writers while the purge runs (both into the filled table).
    entries = home_entries(writer_rows)
    out["writers_alone"] = _writers_for(entries)
    timer = _TimedCursorBatches()
    result: dict[str, float] = {}

    def purge() -> None:
        try:
            with connection.execute_wrapper(timer):
                started = time.perf_counter()
                # The oldest of 8 days, paced as the engine's RetentionThread paces it.
                result["deleted"] = querylog_purge(days - 1, batch, pause=PURGE_PAUSE)
                result["seconds"] = time.perf_counter() - started
        finally:
            connections.close_all()  # this thread's: flushes its statistics too

    thread = threading.Thread(target=purge)
    thread.start()
    out["writers_during_purge"] = _writers_for(entries, until=thread)
    thread.join()
    out["deleted"] = int(result["deleted"])
    out["purge_seconds"] = result["seconds"]
    out["batch_ms"] = [s * 1000 for s in timer.seconds]
    time.sleep(1.0)
    out["dead_tuples"] = _dead_tuples("querylog_querylog")
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("VACUUM querylog_querylog")
        out["vacuum_ms"] = (time.perf_counter() - started) * 1000

        cursor.execute("SELECT count(*) FROM bench_part_old")
        out["partition_rows"] = cursor.fetchone()[0]
        started = time.perf_counter()
        cursor.execute("ALTER TABLE bench_part DETACH PARTITION bench_part_old")
        cursor.execute("DROP TABLE bench_part_old")
        out["partition_drop_ms"] = (time.perf_counter() - started) * 1000
        cursor.execute("DROP TABLE bench_part")
    return out


def _writers_for(entries, until: threading.Thread | None = None) -> float:
    """Rows/s of one pool writer (copy, rollups) over ``entries``; with ``until``, only while it runs."""
    from querylog.logger.pool import QueryLogger
    from querylog.logger.writer import QueryLogWriter

    logger = QueryLogger(len(entries) + 1, 1, WRITE_BATCH, 0.05, writer=QueryLogWriter(rollups=True)).start()
    started = time.perf_counter()
    for e in entries:
        if until is not None and not until.is_alive():
            break
        logger.log_async(e)
        if logger.size > 4 * WRITE_BATCH:
            time.sleep(0.01)
    report = logger.close(timeout=600)
    return report.written / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("DATABASE_URL", ""), help="server URL (postgres://...)")
    parser.add_argument("--rows", type=int, default=40000, help="rows per writer run (default 40000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is printed (default 3)")
    parser.add_argument("--retention-rows", type=int, default=2_000_000, help="rows in the retention table")
    parser.add_argument("--no-retention", action="store_true", help="skip the retention part")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    load_before = os.getloadavg()
    _bench_database(args.postgres)
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
            cursor.execute("SHOW fsync")
            fsync = cursor.fetchone()[0]
            cursor.execute("SHOW synchronous_commit")
            sync_commit = cursor.fetchone()[0]
        import psycopg

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(
            f"machine: nproc={cpus}, Python {platform.python_version()}, PostgreSQL {version} on loopback "
            f"(fsync={fsync}, synchronous_commit={sync_commit}), psycopg {psycopg.__version__} "
            f"({psycopg.pq.__impl__}), {platform.machine()}, load average {load_before[0]:.2f}"
        )
        print(f"runs per figure: {args.runs} (median, min-max); write batch {WRITE_BATCH}; {args.rows} rows a run\n")

        entries = home_entries(args.rows)
        configs = []
        for rollups in (False, True):
            tag = "+ rollups" if rollups else "no rollups"
            configs.append(
                (
                    f"1 writer, bulk_create, {tag}",
                    partial(run_pool, entries, workers=1, method="bulk_create", rollups=rollups),
                )
            )
            for method in ("values", "copy"):
                for workers in (1, 2, 4):
                    name = f"{workers} writer{'s' if workers > 1 else ' '}, {method}, {tag}"
                    configs.append((name, partial(run_pool, entries, workers=workers, method=method, rollups=rollups)))
        busy = [
            (
                f"{w} writer{'s' if w > 1 else ' '}, {m}, + rollups",
                partial(run_pool, entries, workers=w, method=m, rollups=True),
            )
            for m in ("values", "copy")
            for w in (1, 2, 4)
        ]
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for name, run in configs:
                results.setdefault(("alone", name), []).append(run())
            for name, run in busy:
                with BusyListeners(2):
                    results.setdefault(("busy", name), []).append(run())
        for title, kind, rows in (
            ("writer throughput, writers alone (rows/s)", "alone", configs),
            ("... with 2 busy listener-like threads (rows/s)", "busy", busy),
        ):
            print(f"{title:<50} {'median':>10} {'min-max':>17}")
            for name, _ in rows:
                med, lo, hi = median(results[(kind, name)])
                print(f"{name:<50} {med:>10,.0f} {f'{lo:,.0f}-{hi:,.0f}':>17}")
            print()

        if not args.no_retention:
            r = bench_retention(args.retention_rows, 5000, args.rows)
            ms = r["batch_ms"]
            print(f"retention on {r['rows']:,} rows over 8 days, purging the oldest day in batches of {r['batch']}:")
            print(
                f"  deleted {r['deleted']:,} rows in {r['purge_seconds']:.1f} s "
                f"({r['deleted'] / r['purge_seconds']:,.0f} rows/s, "
                f"pausing {PURGE_PAUSE * 1000:.0f} ms between batches)"
            )
            if ms:
                print(
                    f"  per DELETE of {r['batch']}: median {statistics.median(ms):.0f} ms, "
                    f"max {max(ms):.0f} ms ({len(ms)} statements)"
                )
            print(
                f"  one writer (copy + rollups): {r['writers_alone']:,.0f} rows/s alone, "
                f"{r['writers_during_purge']:,.0f} rows/s while the purge runs"
            )
            print(
                f"  dead tuples left for (auto)vacuum: {r['dead_tuples']:,}; "
                f"a VACUUM of the table then took {r['vacuum_ms']:,.0f} ms"
            )
            print(
                f"  partitioned by day instead: DETACH + DROP of one day ({r['partition_rows']:,} rows) "
                f"took {r['partition_drop_ms']:.0f} ms"
            )
    finally:
        _drop_bench_db()
    load_after = os.getloadavg()
    print(
        f"\ntook {time.perf_counter() - began:.0f} s; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (other processes on the machine skew the figures)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
