"""Query log benchmark (``make bench``): what one log_async costs and how fast the writers write.

    python -m devtools.bench.querylog [--rows 30000] [--runs 3]

Runs on a throw-away SQLite file in a temporary directory (GLORYHOLE_DATA_DIR and
DATABASE_URL are pointed there before Django starts), never on data/. Each write
run gets a fresh copy of a migrated database, so every run starts from the same
empty tables. Prints medians (and min-max) of --runs runs, plus the machine.

Entries look like a home network's traffic: 30 clients, 5000 domains with a
Zipf-like popularity, statuses weighted as a busy resolver sees them, timestamps
10,000 per second.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from devtools.bench.common import WRITE_BATCH, BusyListeners, home_entries, median, setup_django


class _Db:
    """Fresh copies of one migrated database, one per run."""

    def __init__(self, tmp: Path) -> None:
        from django.db import connections

        self.tmp = tmp
        self.settings = connections["default"].settings_dict
        self.template = Path(self.settings["NAME"])
        connections.close_all()
        self.n = 0

    def fresh(self) -> Path:
        from django.db import connections

        connections.close_all()
        for old in self.tmp.glob("run-*.sqlite3*"):
            old.unlink()
        self.n += 1
        path = self.tmp / f"run-{self.n}.sqlite3"
        shutil.copyfile(self.template, path)
        # Every thread's connection is made from this one dict, so this moves them all.
        self.settings["NAME"] = str(path)
        return path


# --- log_async cost ------------------------------------------------------------------


def bench_call_cost(runs: int) -> list[tuple[str, float, float, float]]:
    from querylog.logger.baselines import ThreadPerQueryLogger
    from querylog.logger.pool import QueryLogger
    from querylog.logger.swappable import SwappableQueryLogger

    def noop_writer(entries) -> None:
        pass

    n = 200_000
    entries = home_entries(n)
    rows = []

    def timed(make: Callable[[], object], calls: int, name: str, close: bool = True) -> None:
        results = []
        for _ in range(runs):
            logger = make()
            log_async = logger.log_async
            started = time.perf_counter()
            for e in entries[:calls]:
                log_async(e)
            results.append((time.perf_counter() - started) / calls * 1e9)
            if close:
                logger.close(timeout=60)
        rows.append((name, *median(results)))

    # Writers not started: the pure cost of the call, as a listener thread pays it.
    # Steady state: the queue stays under a batch (a batch size above n keeps it so).
    big = 10 * n
    timed(lambda: QueryLogger(big, 1, big, 0.5, writer=noop_writer), n, "pool: log_async, queue under a batch")
    timed(
        lambda: SwappableQueryLogger(QueryLogger(big, 1, big, 0.5, writer=noop_writer)),
        n,
        "pool: same, through SwappableQueryLogger",
    )
    # Backlog: the queue is past a batch and past 80 %, writers are behind.
    timed(
        lambda: QueryLogger(n + 1, 1, WRITE_BATCH, 0.5, writer=noop_writer),
        n,
        "pool: log_async, backlog (queue > batch, > 80 %)",
    )

    class _Q:
        def __init__(self) -> None:
            self.q = queue.Queue(maxsize=n + 1)

        def log_async(self, entry) -> bool:
            try:
                self.q.put_nowait(entry)
                return True
            except queue.Full:
                return False

        def close(self, timeout: float) -> None:
            pass

    timed(_Q, n, "reference: queue.Queue(maxsize).put_nowait")
    timed(
        lambda: ThreadPerQueryLogger(n + 1, writer=noop_writer).start(),
        2000,
        "thread: log_async (starts a thread; no-op write)",
    )
    return rows


# --- writer throughput -----------------------------------------------------------------


# One run each; main() interleaves the configurations run by run, so a burst of
# load from elsewhere on the machine lands on one run of each, not on every run of one.


def run_raw(db: _Db, entries) -> float:
    """sqlite3 executemany of prebuilt tuples: the ceiling for this table and its indexes."""
    from django.db import connections

    from querylog.db import COLUMNS
    from querylog.logger.writer import QueryLogWriter

    _, build = QueryLogWriter(rollups=False)._prepare()
    rows = build(entries)
    sql = "INSERT INTO querylog_querylog ({}) VALUES ({})".format(", ".join(COLUMNS), ", ".join("?" * len(COLUMNS)))
    path = db.fresh()
    connections.close_all()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    for i in range(0, len(rows), WRITE_BATCH):
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(sql, rows[i : i + WRITE_BATCH])
        raw.execute("COMMIT")
    elapsed = time.perf_counter() - started
    raw.close()
    return len(rows) / elapsed


def run_pool(db: _Db, entries, *, workers: int, method: str, rollups: bool) -> float:
    from querylog.logger.pool import QueryLogger
    from querylog.logger.writer import QueryLogWriter

    db.fresh()
    logger = QueryLogger(
        len(entries) + 1, workers, WRITE_BATCH, 0.5, writer=QueryLogWriter(rollups=rollups, method=method)
    )
    for e in entries:  # queued before the writers start: measures sustained write capacity
        logger.log_async(e)
    started = time.perf_counter()
    logger.start()
    report = logger.close(timeout=600)
    return _checked(report, entries, time.perf_counter() - started)


def run_thread(db: _Db, entries, *, rollups: bool) -> float:
    from querylog.logger.baselines import ThreadPerQueryLogger
    from querylog.logger.writer import QueryLogWriter

    db.fresh()
    logger = ThreadPerQueryLogger(len(entries) + 1, writer=QueryLogWriter(rollups=rollups))
    started = time.perf_counter()
    for e in entries:
        logger.log_async(e)
    report = logger.close(timeout=600)
    return _checked(report, entries, time.perf_counter() - started)


def _checked(report, entries, elapsed: float) -> float:
    from querylog.models import QueryLog

    if report.written != len(entries) or QueryLog.objects.count() != len(entries):
        raise SystemExit(f"bench: wrote {report.written} of {len(entries)}")
    return len(entries) / elapsed


def bench_breakdown(entries, runs: int) -> list[tuple[str, float, float, float]]:
    """Python cost per row of each step, outside the database."""
    from querylog.db import querylog_from_entry
    from querylog.logger.writer import QueryLogWriter
    from querylog.rollups import rollup_rows

    _, build = QueryLogWriter(rollups=False)._prepare()
    batches = [entries[i : i + WRITE_BATCH] for i in range(0, len(entries), WRITE_BATCH)]
    steps = [
        ("values/executemany path: build row tuples", lambda b: build(b)),
        ("ORM path: build QueryLog instances", lambda b: [querylog_from_entry(e) for e in b]),
        ("rollups: aggregate in Python", lambda b: rollup_rows(b)),
    ]
    out = []
    for name, step in steps:
        results = []
        for _ in range(runs):
            started = time.perf_counter()
            for b in batches:
                step(b)
            results.append((time.perf_counter() - started) / len(entries) * 1e6)
        out.append((name, *median(results)))
    return out


# --- the engine's share: CPU and GIL per logged row, pool against writer processes -------


def _push(logger, entries, rate: float) -> None:
    """log_async every entry at ``rate`` per second, in ticks of 5 ms, as listener threads would."""
    log_async = logger.log_async
    per_tick = max(1, int(rate * 0.005))
    started = time.perf_counter()
    for i in range(0, len(entries), per_tick):
        for e in entries[i : i + per_tick]:
            log_async(e)
        wait = started + (i + per_tick) / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)


# py-spy --gil samples of the writer thread, by the step its stack is in (first match wins).
_GIL_STEPS = (
    ("build row tuples", "build (querylog/db.py"),
    ("rollups: aggregate", "rollup_rows (querylog/rollups.py"),
    ("rollups: write", "rollup_write (querylog/rollups.py"),
    ("insert (bind + execute)", "execute_values (querylog/db.py"),
    ("serialise + send (process)", "write (querylog/logger/process.py"),
)


def _gil_samples(path: Path) -> dict[str, int]:
    """Samples per writer step in a ``py-spy record --gil -f raw`` file, plus the pusher's and the total."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        if "_push (devtools/bench/querylog.py" in stack:
            key = "pusher (log_async)"
        elif "_run (querylog/logger/pool.py" in stack or "_run (querylog/logger/process.py" in stack:
            key = next((name for name, frame in _GIL_STEPS if frame in stack), "writer: other")
            key = key if key == "writer: other" else f"writer: {key}"
        else:
            key = "other"
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def run_engine_share(db: _Db, entries, *, mode: str, rate: float, gil: bool) -> dict[str, float]:
    """One run: CPU seconds of this process and of its children per row, while ``entries`` go in at ``rate``."""
    import resource
    import subprocess

    from querylog.logger.pool import QueryLogger
    from querylog.logger.process import ProcessQueryLogger

    db.fresh()
    if mode == "process":
        logger = ProcessQueryLogger(len(entries) + 1, 1, WRITE_BATCH, 0.5).start()
        deadline = time.monotonic() + 60
        while not logger.child_pids:  # Django's start-up in the child is not a row's cost
            if time.monotonic() > deadline:
                raise SystemExit("bench: the writer process did not start")
            time.sleep(0.01)
    elif mode == "pool":
        logger = QueryLogger(len(entries) + 1, 1, WRITE_BATCH, 0.5).start()
    else:
        logger = QueryLogger(len(entries) + 1, 1, WRITE_BATCH, 0.5, writer=lambda batch: None).start()
    spy = None
    if gil:
        out = db.tmp / f"gil-{mode}.txt"
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--gil",
                "--nonblocking",
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(out),
                "-p",
                str(os.getpid()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # py-spy attaches
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    _push(logger, entries, rate)
    report = logger.close(timeout=600)
    wall = time.perf_counter() - wall0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child was waited for in close()
    # The children's CPU less what their start took (Django's set-up is not a row's cost).
    start_cpu = getattr(logger, "children_start_cpu", 0.0)
    child = children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime - start_cpu
    result = {
        "engine": (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime) / len(entries) * 1e6,
        "child": child / len(entries) * 1e6,
        "wall": wall,
    }
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
        spy.wait(30)
        samples = _gil_samples(db.tmp / f"gil-{mode}.txt")
        expected = 250 * wall  # samples py-spy takes in the push; GIL-holding ones are kept
        for key, n in samples.items():
            result[f"gil {key}"] = n / expected * 100
    if mode != "noop":
        _checked(report, entries, 1.0)
    return result


def bench_engine_share(db: _Db, entries, runs: int, rate: float, gil: bool) -> None:
    modes = ("noop", "pool", "process")
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(runs):  # interleaved, so a burst of load elsewhere lands on one run of each
        for mode in modes:
            results[mode].append(run_engine_share(db, entries, mode=mode, rate=rate, gil=gil))
    print(
        f"engine's share per logged row, {len(entries)} rows at {rate:,.0f}/s "
        f"(CPU us per row: getrusage SELF / CHILDREN less their start)"
    )
    print(f"{'':<52} {'engine':>8} {'min-max':>13} {'child':>8} {'total':>8}")
    names = {
        "noop": "intake only (pool, no-op writer)",
        "pool": "pool: 1 writer thread, values, + rollups",
        "process": "process: 1 writer process, values, + rollups",
    }
    for mode in modes:
        med, lo, hi = median([r["engine"] for r in results[mode]])
        child = statistics.median(r["child"] for r in results[mode])
        print(f"{names[mode]:<52} {med:>8.2f} {f'{lo:.2f}-{hi:.2f}':>13} {child:>8.2f} {med + child:>8.2f}")
    if gil:
        print("\nGIL held, % of the push's wall time (py-spy record --gil, 250 Hz; median of runs)")
        for mode in ("pool", "process"):
            keys = sorted({k for r in results[mode] for k in r if k.startswith("gil ")})
            for key in keys:
                value = statistics.median(r.get(key, 0.0) for r in results[mode])
                print(f"  {mode:<8} {key[4:]:<44} {value:>6.1f}")
    print()


def _print_throughput(title: str, rows: list[tuple[str, list[float]]], raw_median: float) -> None:
    print(f"{title:<50} {'median':>10} {'min-max':>17} {'of raw':>7}")
    for name, values in rows:
        med, lo, hi = median(values)
        print(f"{name:<50} {med:>10,.0f} {f'{lo:,.0f}-{hi:,.0f}':>17} {med / raw_median:>7.0%}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows per pool write run (default 20000)")
    parser.add_argument("--thread-rows", type=int, default=300, help="rows per thread-per-query run (default 300)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is printed (default 3)")
    parser.add_argument("--rate", type=float, default=10000, help="entries per second in the engine-share runs")
    parser.add_argument(
        "--gil", action="store_true", help="also sample who holds the GIL (needs py-spy and ptrace rights)"
    )
    parser.add_argument(
        "--engine-share-only", action="store_true", help="only the pool-against-process engine-share figures"
    )
    args = parser.parse_args(argv)

    began = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gloryhole-bench-") as tmpdir:
        tmp = Path(tmpdir)
        setup_django(tmp, quiet_querylog=True)
        db = _Db(tmp)
        entries = home_entries(args.rows)

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(
            f"machine: nproc={cpus}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"{platform.machine()}, load average {load_before[0]:.2f}"
        )
        print(f"runs per figure: {args.runs} (median, min-max); write batch {WRITE_BATCH}\n")

        bench_engine_share(db, entries, args.runs, args.rate, args.gil)
        if args.engine_share_only:
            return 0

        print(f"{'log_async cost (ns per call)':<50} {'median':>10} {'min-max':>17}")
        for name, med, lo, hi in bench_call_cost(args.runs):
            print(f"{name:<50} {med:>10,.0f} {f'{lo:,.0f}-{hi:,.0f}':>17}")
        print()

        print(f"{'Python cost per row, outside the database (us)':<50} {'median':>10} {'min-max':>17}")
        for name, med, lo, hi in bench_breakdown(entries, args.runs):
            print(f"{name:<50} {med:>10.2f} {f'{lo:.2f}-{hi:.2f}':>17}")
        print()

        half = entries[: max(args.rows // 2, WRITE_BATCH)]  # bulk_create is slow: fewer rows
        alone: list[tuple[str, Callable[[], float]]] = [
            ("raw sqlite3 executemany, prebuilt tuples", lambda: run_raw(db, entries))
        ]
        for rollups in (False, True):
            tag = "+ rollups" if rollups else "no rollups"
            alone.append(
                (
                    f"pool 1 worker, bulk_create, {tag}",
                    partial(run_pool, db, half, workers=1, method="bulk_create", rollups=rollups),
                )
            )
            alone.append(
                (
                    f"pool 1 worker, executemany, {tag}",
                    partial(run_pool, db, entries, workers=1, method="executemany", rollups=rollups),
                )
            )
            for workers in (1, 2, 4):
                name = f"pool {workers} worker{'s' if workers > 1 else ''}, values, {tag}"
                alone.append((name, partial(run_pool, db, entries, workers=workers, method="values", rollups=rollups)))
            alone.append(
                (f"thread per query, {tag}", partial(run_thread, db, entries[: args.thread_rows], rollups=rollups))
            )
        busy: list[tuple[str, Callable[[], float]]] = [
            ("raw sqlite3 executemany, prebuilt tuples", lambda: run_raw(db, entries)),
            (
                "pool 1 worker, executemany, + rollups",
                partial(run_pool, db, entries, workers=1, method="executemany", rollups=True),
            ),
            (
                "pool 1 worker, values, + rollups",
                partial(run_pool, db, entries, workers=1, method="values", rollups=True),
            ),
            (
                "pool 2 workers, values, + rollups",
                partial(run_pool, db, entries, workers=2, method="values", rollups=True),
            ),
        ]
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for name, run in alone:
                results.setdefault(("alone", name), []).append(run())
            for name, run in busy:
                with BusyListeners(2):
                    results.setdefault(("busy", name), []).append(run())

        raw_median = statistics.median(results[("alone", alone[0][0])])
        _print_throughput(
            "writer throughput, writer alone (rows/s)", [(n, results[("alone", n)]) for n, _ in alone], raw_median
        )
        _print_throughput(
            "... with 2 busy listener-like threads (rows/s)", [(n, results[("busy", n)]) for n, _ in busy], raw_median
        )
        print(
            f"{args.rows} rows per pool run ({len(half)} for bulk_create), {args.thread_rows} per "
            "thread-per-query run; 'of raw' is against the writer-alone raw median."
        )

    load_after = os.getloadavg()
    print(
        f"took {time.perf_counter() - began:.0f} s; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (other processes on the machine skew the figures)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
