"""Hard faults under load, each a bounded scripted check on loopback (``make faults``, ``make soak``).

    devtools/pgtest.sh .venv/bin/python -m devtools.load.faults [all | pg-down kill9 sigterm web-restart]
    devtools/pgtest.sh .venv/bin/python -m devtools.load.faults soak --qps 10000 --duration 1800

DATABASE_URL names the database the engines use (``make faults`` starts a throw-away
PostgreSQL with devtools/pgtest.sh, which also tells this script how to stop and
start it; unset, a temporary SQLite file); the script migrates it and empties the
query log before each check. Load
is dnsperf (Debian's package) at --qps against ``manage.py rundns`` on 127.0.0.1,
forwarding to devtools/load/fast_upstream.py on 127.0.0.1. Every process started here is
stopped by PID; every load run has a fixed length.

Checks (docs/scale-out.md has the measured results):

- pg-down: PostgreSQL stopped for 30 s while the engine answers --qps. DNS must keep
  answering; afterwards rows lost (answered - rows) must equal
  dns_query_log_drops_total from the engine's /metrics.
- kill9: SIGKILL under load; how many answered queries have no row, what the buffer
  held just before; then a restart on the same port must answer within 2 s.
- sigterm: SIGTERM under load loses no entry, on PostgreSQL and on SQLite.
- web-restart: gunicorn (gloryhole_site.wsgi) on the same database stopped and started
  under load: the engine's answers, drops and rows are as without it.
- db-lock: a SQLite database of --prefill rows locked (BEGIN EXCLUSIVE from another
  connection) for --lock seconds under --qps, then released: answers per second and the
  latency of a probe (a blocked name, one query at a time every 20 ms) while the writers
  catch up on the backlog; rows lost must equal the drops. ``--compare REV`` measures
  the engine of that git revision first (``git archive`` into the temporary directory,
  same venv), then this tree's, on copies of the same database (docs/querylog.md).
- soak (only when named): RSS, threads, queue depth and drops once a minute.

One module over 500 lines: every check is a short script over the same ``Harness``
(the migrated database, engines, dnsperf load), and each reads top to bottom
as the fault it plays; split per check, the reader would jump between files for
what is one sequence of steps.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from devtools.bench.common import QUERYLOG_COLUMNS, querylog_rows
from devtools.load.harness import (
    LOOPBACK,
    REPO,
    Processes,
    blocked_name,
    free_port,
    parse_dnsperf,
    scrape_metrics,
    start_upstream,
    tail,
    wait_for_line,
    write_blocklist,
    write_queries,
)

PY = sys.executable
CHECKS = ("pg-down", "kill9", "sigterm", "web-restart", "db-lock")
BLOCKLIST_SIZE = 10_000
OUTAGE_SECONDS = 30


# --- the database ------------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://", "pgsql://"))


def sql(url: str, statement: str) -> list[tuple]:
    """Run one statement on the engines' database from outside Django."""
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url.replace("pgsql://", "postgres://", 1), connect_timeout=5, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []
    path = url[len("sqlite:///") :]
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        rows = conn.execute(statement).fetchall()
        conn.commit()
        return rows


def count_rows(url: str) -> int:
    return sql(url, "SELECT count(*) FROM querylog_querylog")[0][0]


def clear_log(url: str) -> None:
    if is_postgres(url):
        sql(url, "TRUNCATE querylog_querylog, querylog_queryrollup, querylog_domainrollup, querylog_clientrollup")
    else:
        for table in ("querylog_querylog", "querylog_queryrollup", "querylog_domainrollup", "querylog_clientrollup"):
            sql(url, f"DELETE FROM {table}")


class Server:
    """The PostgreSQL server devtools/pgtest.sh started (PGTEST_* variables)."""

    def __init__(self) -> None:
        self.bin = os.environ.get("PGTEST_BIN", "")
        self.data = os.environ.get("PGTEST_DATA", "")
        self.log = os.environ.get("PGTEST_LOG", "")
        self.options = os.environ.get("PGTEST_OPTIONS", "")
        self.as_user = os.environ.get("PGTEST_AS", "").split()

    @property
    def available(self) -> bool:
        return bool(self.bin and self.data)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, f"{self.bin}/pg_ctl", "-D", self.data, *args], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)  # fmt: skip

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", self.log, "-o", self.options, "-w", "start")


# --- processes ---------------------------------------------------------------------------


@dataclass(slots=True)
class Engine:
    proc: subprocess.Popen
    port: int
    metrics_port: int
    stdout: Path
    stderr: Path
    started: float  # monotonic, just before Popen
    name: str


class Harness:
    def __init__(self, work: Path, url: str) -> None:
        self.work = work
        self.url = url
        self.procs = Processes()
        self.upstream = ""
        self.queries = work / "queries.txt"
        self.n = 0

    def env(self, url: str | None = None, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=url or self.url,
            GLORYHOLE_DATA_DIR=str(self.work / "data"),
            GLORYHOLE_ENV_FILE=str(self.work / "none.env"),
            GLORYHOLE_UPSTREAMS=self.upstream,
            GLORYHOLE_BLOCKLIST_UPDATE_HOURS="0",  # nothing beyond loopback
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def manage(self, *args: str, url: str | None = None) -> str:
        done = subprocess.run([PY, "manage.py", *args], cwd=REPO, env=self.env(url), capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def prepare(self, url: str | None = None) -> None:
        """Migrate, import a generated blocklist and enable only it."""
        url = url or self.url
        self.manage("migrate", "--noinput", url=url)
        blocklist = self.work / "blocklist.txt"
        if not blocklist.exists():
            write_blocklist(blocklist, BLOCKLIST_SIZE)
        self.manage("importblocklist", "faults", str(blocklist), url=url)
        code = (
            "from dnsengine.models import Blocklist; from dnsengine.services import config_generation_bump; "
            "Blocklist.objects.exclude(name='faults').update(enabled=False); config_generation_bump()"
        )
        self.manage("shell", "-c", code, url=url)

    def start_engine(
        self, *, url: str | None = None, port: int | None = None, tree: Path | None = None, **extra: str
    ) -> Engine:
        """rundns on loopback; ``tree``: another checkout's code (its manage.py puts it first on sys.path)."""
        self.n += 1
        port = port or free_port()
        metrics_port = free_port()
        name = f"faults-{self.n}"
        out, err = self.work / f"{name}.out", self.work / f"{name}.err"
        env = self.env(url, GLORYHOLE_METRICS_PORT=str(metrics_port), GLORYHOLE_ENGINE_NAME=name, **extra)
        manage = str(tree / "manage.py") if tree is not None else "manage.py"
        started = time.monotonic()
        proc = self.procs.start(name, [PY, manage, "rundns", "--host", LOOPBACK, "--port", str(port)],
                                stdout=out, stderr=err, env=env)  # fmt: skip
        if not wait_for_line(proc, out, re.compile("listening on"), timeout=60):
            raise RuntimeError(f"rundns did not start: {tail(err)}")
        return Engine(proc, port, metrics_port, out, err, started, name)

    def stop_engine(self, engine: Engine, timeout: float = 120) -> str:
        code, _ = self.procs.stop(engine.proc, timeout=timeout)
        if code != 0:
            raise RuntimeError(f"rundns exited with {code}: {tail(engine.stderr)}")
        return engine.stdout.read_text(errors="replace").strip().splitlines()[-1]

    def dnsperf(self, port: int, qps: int, seconds: int, *, stats_every: int = 0) -> tuple[subprocess.Popen, Path]:
        self.n += 1
        out = self.work / f"dnsperf-{self.n}.out"
        argv = ["dnsperf", "-s", LOOPBACK, "-p", str(port), "-d", str(self.queries), "-l", str(seconds),
                "-Q", str(qps), "-q", "2000", "-c", "4", "-t", "2"]  # fmt: skip
        if stats_every:
            argv += ["-S", str(stats_every)]
        return self.procs.start("dnsperf", argv, stdout=out, stderr=self.work / f"dnsperf-{self.n}.err",
                                guard=False), out  # fmt: skip

    def wait(self, proc: subprocess.Popen, seconds: float) -> None:
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc)
            raise RuntimeError("a load run did not end in time") from None


def answers_within(port: int, limit: float) -> float | None:
    """Seconds until a query to the port is answered, polling every 10 ms; None after limit."""
    started = time.monotonic()
    query = dns.message.make_query("probe.example", "A")
    while time.monotonic() - started < limit:
        with contextlib.suppress(dns.exception.Timeout, OSError):
            dns.query.udp(query, LOOPBACK, port=port, timeout=0.01)
            return time.monotonic() - started
    return None


def metrics(engine: Engine) -> dict[str, float]:
    return scrape_metrics(engine.metrics_port) or {}


def drained(engine: Engine, timeout: float) -> dict[str, float]:
    """Wait until the engine's query log buffer is empty; returns the last metrics."""
    deadline = time.monotonic() + timeout
    m = metrics(engine)
    while m.get("dns_query_log_buffer_size", 1) > 0 and time.monotonic() < deadline:
        time.sleep(0.25)
        m = metrics(engine)
    return m


_SUMMARY = re.compile(r"(\d+) written, (\d+) dropped, (\d+) unwritten")


def per_second_answers(dnsperf_out: Path) -> list[float]:
    """dnsperf -S 1 lines ("<epoch>: <qps>"): completed queries per second."""
    rates = []
    for line in dnsperf_out.read_text(errors="replace").splitlines():
        match = re.fullmatch(r"\d+\.\d+: ([\d.]+)", line.strip())
        if match:
            rates.append(float(match.group(1)))
    return rates


# --- checks ------------------------------------------------------------------------------


def check_pg_down(h: Harness, qps: int) -> list[str]:
    server = Server()
    if not is_postgres(h.url) or not server.available:
        return ["pg-down: skipped (needs PostgreSQL started by devtools/pgtest.sh)"]
    clear_log(h.url)
    engine = h.start_engine(GLORYHOLE_QUERY_LOG_BUFFER="50000")
    before_outage, outage = 10, OUTAGE_SECONDS
    length = before_outage + outage + 15
    perf, out = h.dnsperf(engine.port, qps, length, stats_every=1)
    time.sleep(before_outage)
    server.stop()
    stopped_at = time.monotonic()
    time.sleep(outage)
    server.start()
    restarted_after = time.monotonic() - stopped_at
    h.wait(perf, length + 30)
    m = drained(engine, 120)
    summary = h.stop_engine(engine)
    result = parse_dnsperf(out)
    rows = count_rows(h.url)
    written, dropped, unwritten = (int(x) for x in _SUMMARY.search(summary).groups())
    rates = per_second_answers(out)
    during = rates[before_outage : before_outage + outage] or [0.0]
    lost_rows = result.completed - rows
    ok = lost_rows == int(m.get("dns_query_log_drops_total", -1)) == dropped and result.lost == 0
    return [
        f"pg-down: PostgreSQL stopped {restarted_after:.1f} s under {qps} QPS for {length} s",
        f"  dnsperf: {result.completed} answered, {result.lost} lost, "
        f"answers/s while the database was down: min {min(during):,.0f}, max {max(during):,.0f}",
        f"  rows {rows}, answered - rows = {lost_rows}; "
        f"dns_query_log_drops_total {m.get('dns_query_log_drops_total')}; "
        f"write errors (retries) {m.get('dns_query_log_write_errors_total')}; rundns: {summary}",
        "  answers/s, second by second (database down from second "
        f"{before_outage + 1} to {before_outage + outage}): " + " ".join(f"{r:.0f}" for r in rates),
        f"  {'OK' if ok else 'FAILED'}: rows lost == drops, DNS never stopped"
        + ("" if written == rows and unwritten == 0 else f" (written {written} vs rows {rows}, unwritten {unwritten})"),
    ]


def check_kill9(h: Harness, qps: int) -> list[str]:
    clear_log(h.url)
    engine = h.start_engine()
    perf, out = h.dnsperf(engine.port, qps, 12)
    time.sleep(10)
    m = metrics(engine)
    os.kill(engine.proc.pid, signal.SIGKILL)
    engine.proc.wait(10)
    h.procs.procs = [(n, p) for n, p in h.procs.procs if p is not engine.proc]
    h.wait(perf, 40)
    result = parse_dnsperf(out)
    rows = count_rows(h.url)
    # The restart, on the same port, timed from the exec to the first answer.
    again = h.start_engine(port=engine.port)
    ready = time.monotonic() - again.started
    probe = answers_within(again.port, 2.0)
    serve_after = ready + (probe or 0.0) if probe is not None else None
    perf2, out2 = h.dnsperf(again.port, qps, 5)
    h.wait(perf2, 40)
    after = parse_dnsperf(out2)
    h.stop_engine(again)
    lost = result.completed - rows
    return [
        f"kill9: SIGKILL after 10 s of {qps} QPS",
        f"  answered before the kill {result.completed}, rows {rows}: {lost} entries lost; just before the kill "
        f"the buffer held {m.get('dns_query_log_buffer_size', 0):.0f} "
        f"(capacity {m.get('dns_query_log_buffer_capacity', 0):.0f}, batch 2000)",
        f"  restart on the same port: 'listening' after {ready:.2f} s, first answer after "
        + (f"{serve_after:.2f} s" if serve_after is not None else "more than 2 s")
        + f"; then {after.completed} answered / {after.lost} lost in 5 s at {qps} QPS",
        f"  {'OK' if serve_after is not None and serve_after <= 2.0 else 'FAILED'}: serves within 2 s",
    ]


def check_sigterm(h: Harness, qps: int, url: str, label: str) -> list[str]:
    clear_log(url)
    engine = h.start_engine(url=url)
    perf, out = h.dnsperf(engine.port, qps, 12)
    time.sleep(8)
    summary = h.stop_engine(engine)
    h.wait(perf, 40)
    result = parse_dnsperf(out)
    rows = count_rows(url)
    answered = int(re.search(r"stopped after (\d+) queries", summary).group(1))
    ok = rows == answered == result.completed and " 0 dropped, 0 unwritten" in summary
    return [
        f"sigterm ({label}): SIGTERM after 8 s of {qps} QPS",
        f"  dnsperf answered {result.completed}; rundns: {summary}; rows {rows}",
        f"  {'OK' if ok else 'FAILED'}: zero lost",
    ]


def check_web_restart(h: Harness, qps: int) -> list[str]:
    clear_log(h.url)
    engine = h.start_engine()
    web_port = free_port()
    argv = [str(Path(PY).parent / "gunicorn"), "gloryhole_site.wsgi", "-b", f"{LOOPBACK}:{web_port}", "-w", "2"]
    env = h.env(ALLOWED_HOSTS="127.0.0.1")

    def start_web() -> subprocess.Popen:
        h.n += 1
        web = h.procs.start("gunicorn", argv, stdout=h.work / f"web-{h.n}.out", stderr=h.work / f"web-{h.n}.err",
                            env=env)  # fmt: skip
        return web

    def web_up(limit: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < limit:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://{LOOPBACK}:{web_port}/accounts/login/", timeout=1) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            time.sleep(0.1)
        return None

    web = start_web()
    if web_up(30) is None:
        raise RuntimeError(f"gunicorn did not serve /accounts/login/: {tail(h.work / f'web-{h.n}.err')}")
    perf, out = h.dnsperf(engine.port, qps, 20, stats_every=1)
    time.sleep(8)
    h.procs.stop(web, timeout=30)
    down_at = time.monotonic()
    web = start_web()
    back = web_up(30)
    web_gap = time.monotonic() - down_at if back is not None else None
    h.wait(perf, 60)
    m = drained(engine, 60)
    summary = h.stop_engine(engine)
    h.procs.stop(web, timeout=30)
    result = parse_dnsperf(out)
    rows = count_rows(h.url)
    rates = per_second_answers(out)
    warnings = [
        ln for ln in engine.stderr.read_text(errors="replace").splitlines() if " WARNING " in ln or " ERROR " in ln
    ]
    ok = result.lost == 0 and rows == result.completed and not m.get("dns_query_log_drops_total") and not warnings
    return [
        f"web-restart: gunicorn stopped and started after 8 s of {qps} QPS (web back in "
        + (f"{web_gap:.1f} s)" if web_gap is not None else "- never)"),
        f"  dnsperf: {result.completed} answered, {result.lost} lost, avg latency {result.avg_s * 1000:.2f} ms, "
        f"answers/s min {min(rates or [0]):,.0f} max {max(rates or [0]):,.0f}",
        f"  rows {rows}, drops {m.get('dns_query_log_drops_total')}, engine warnings {len(warnings)}; "
        f"rundns: {summary}",
        f"  {'OK' if ok else 'FAILED'}: the engine did not notice",
    ]


def prefill_sqlite(path: Path, rows: int) -> None:
    """Add ``rows`` QueryLog rows of the last day straight into a SQLite file: the writers then
    work against large indexes (and retention, 7 days by default, leaves them alone)."""
    one = "(" + ", ".join("?" * 11) + ")"
    # querylog_rows are 10,000 a second from a fixed date; moved to end an hour ago.
    shift = time.time() - 3600 - 1_790_000_000 - rows / 10_000
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for start in range(0, rows, 100_000):
            data = querylog_rows(min(100_000, rows - start), seed=start)
            data = [(_shifted(row[0], shift + start / 10_000), *row[1:]) for row in data]
            db.execute("BEGIN")
            for i in range(0, len(data), 90):
                part = data[i : i + 90]
                db.execute(f"INSERT INTO querylog_querylog ({QUERYLOG_COLUMNS}) VALUES {', '.join([one] * len(part))}",
                           [v for row in part for v in row])  # fmt: skip
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _shifted(text: str, seconds: float) -> str:
    """A stored timestamp ("YYYY-MM-DD HH:MM:SS.ffffff", UTC) moved by whole ``seconds``."""
    whole, _, fraction = text.partition(".")
    moved = time.gmtime(calendar.timegm(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + int(seconds))
    return time.strftime("%Y-%m-%d %H:%M:%S", moved) + (f".{fraction}" if fraction else "")


class Probe:
    """One query at a time for a blocked name (answered by the engine itself), every ``every`` seconds."""

    def __init__(self, port: int, name: str, every: float = 0.02, timeout: float = 2.0) -> None:
        self.port, self.every, self.timeout = port, every, timeout
        self.wire = dns.message.make_query(name, "A").to_wire()
        self.samples: list[tuple[float, float | None]] = []  # (monotonic sent, seconds or None: no answer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            qid = 0
            while not self._stop.is_set():
                qid = (qid + 1) & 0xFFFF
                wire = qid.to_bytes(2, "big") + self.wire[2:]
                sent = time.monotonic()
                sock.sendto(wire, (LOOPBACK, self.port))
                took = None
                with contextlib.suppress(TimeoutError, OSError):
                    while time.monotonic() - sent < self.timeout:
                        if sock.recv(4096)[:2] == wire[:2]:  # not a late answer to an earlier probe
                            took = time.monotonic() - sent
                            break
                self.samples.append((sent, took))
                self._stop.wait(max(0.0, self.every - (time.monotonic() - sent)))

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 1)

    def between(self, start: float, end: float) -> str:
        values = [t for sent, t in self.samples if start <= sent < end]
        answered = sorted(t for t in values if t is not None)
        if not answered:
            return f"{len(values)} probes, none answered"
        ms = [t * 1000 for t in answered]
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        return (f"median {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms "
                f"({len(values)} probes, {len(values) - len(answered)} unanswered)")  # fmt: skip


def check_db_lock(h: Harness, qps: int, lock: int, template: Path, trees: list[tuple[str, Path | None]]) -> list[str]:
    lines = []
    for label, tree in trees:
        db = h.work / "dblock.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(template, db)
        url = f"sqlite:///{db}"
        before = count_rows(url)
        engine = h.start_engine(url=url, tree=tree, GLORYHOLE_QUERY_LOG_BUFFER="50000")
        lead, after = 10, 30
        length = lead + lock + after
        perf, out = h.dnsperf(engine.port, qps, length, stats_every=1)
        probe = Probe(engine.port, blocked_name(7)).start()
        time.sleep(lead)
        locker = sqlite3.connect(db, isolation_level=None, timeout=30)
        locker.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        time.sleep(lock)
        locker.execute("COMMIT")
        locker.close()
        released = time.monotonic()
        # Caught up: less than one batch (2,000) queued again.
        m = metrics(engine)
        while m.get("dns_query_log_buffer_size", 0) >= 2000 and time.monotonic() - released < after - 1:
            time.sleep(0.25)
            m = metrics(engine)
        caught_up = time.monotonic()
        h.wait(perf, length + 30)
        probe.stop()
        m = drained(engine, 120)
        summary = h.stop_engine(engine)
        result = parse_dnsperf(out)
        rows = count_rows(url) - before
        written, dropped, unwritten = (int(x) for x in _SUMMARY.search(summary).groups())
        rates = per_second_answers(out)
        # dnsperf's per-second lines start with its run; the lock began `lead` seconds in.
        began = locked_at - lead
        lock_from, lock_to, caught = lead, int(released - began), int(caught_up - began)
        during_lock = rates[lock_from + 1 : lock_to] or [0.0]
        catch_up = rates[lock_to : caught + 1] or [0.0]
        # The engine's own count: dnsperf's queries and the probe's.
        answered = int(re.search(r"stopped after (\d+) queries", summary).group(1))
        ok = (answered - rows == dropped == int(m.get("dns_query_log_drops_total", -1))
              and unwritten == 0 and written == rows)  # fmt: skip
        lines += [
            f"db-lock ({label}): SQLite ({before:,} rows) locked {released - locked_at:.1f} s under {qps} QPS; "
            f"caught up {caught_up - released:.1f} s after the release",
            f"  dnsperf: {result.completed} answered, {result.lost} lost; answers/s while locked "
            f"{min(during_lock):,.0f}-{max(during_lock):,.0f}, while catching up {min(catch_up):,.0f}-"
            f"{max(catch_up):,.0f} (median {statistics.median(catch_up):,.0f})",
            f"  probe before the lock: {probe.between(began, locked_at)}",
            f"  probe while catching up: {probe.between(released, caught_up)}",
            f"  probe after: {probe.between(caught_up, caught_up + 10)}",
            f"  rows {rows}, answered (dnsperf and probe) - rows = {answered - rows}; drops {dropped}; "
            f"rundns: {summary}",
            "  answers/s, second by second (locked from second "
            f"{lock_from + 1} to {lock_to}): " + " ".join(f"{r:.0f}" for r in rates),
            f"  {'OK' if ok else 'FAILED'}: rows lost == drops, nothing unwritten",
        ]
        print("\n".join(lines[-8:]), flush=True)
    return lines


def revision_tree(work: Path, rev: str) -> Path:
    """The files of git revision ``rev`` of this repository, exported under ``work``."""
    tree = work / f"tree-{rev.replace('/', '_')}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True, timeout=120)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=120)
    return tree


def soak(h: Harness, qps: int, duration: int) -> list[str]:
    clear_log(h.url)
    engine = h.start_engine()
    perf, out = h.dnsperf(engine.port, qps, duration)
    print(f"soak: {qps} QPS for {duration} s on {'PostgreSQL' if is_postgres(h.url) else 'SQLite'}", flush=True)
    # RSS, and what it is made of (dnsengine/runtime/memory.py; 0 where the platform has no reading):
    # SQLite's heap, bytes malloc hands out, bytes freed but kept by malloc, and Python's
    # live small objects (thousands of blocks).
    print(
        f"{'minute':>6} {'RSS MiB':>8} {'sqlite':>7} {'malloc':>7} {'m.free':>7} {'py kblk':>8} {'threads':>8} "
        f"{'queue':>7} {'drops':>7} {'written':>11} {'qps':>8}",
        flush=True,
    )
    samples = []
    started = time.monotonic()
    last_q, last_t = 0.0, started
    minute = 0
    while perf.poll() is None:
        minute += 1
        deadline = started + 60 * minute
        while perf.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        if perf.poll() is not None and time.monotonic() < deadline - 5:
            break
        status = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{engine.proc.pid}/status").read_text().splitlines()
            if ":" in line
        )
        m = metrics(engine)
        rss = int(status["VmRSS"].split()[0]) / 1024
        threads = int(status["Threads"])
        now = time.monotonic()
        q = m.get("dns_queries_total", 0.0)
        rate = (q - last_q) / (now - last_t)
        last_q, last_t = q, now
        samples.append(
            (minute, rss, threads, m.get("dns_query_log_buffer_size", 0), m.get("dns_query_log_drops_total", 0))
        )
        mib = {
            "sqlite": m.get("dns_engine_sqlite_heap_bytes", 0.0) / 2**20,
            "malloc_in_use": m.get('dns_engine_malloc_bytes{state="in_use"}', 0.0) / 2**20,
            "malloc_free": m.get('dns_engine_malloc_bytes{state="free"}', 0.0) / 2**20,
        }
        blocks = m.get("dns_engine_python_allocated_blocks", 0.0) / 1000
        print(f"{minute:>6} {rss:>8.1f} {mib['sqlite']:>7.1f} {mib['malloc_in_use']:>7.1f} {mib['malloc_free']:>7.1f} "
              f"{blocks:>8.0f} {threads:>8} {m.get('dns_query_log_buffer_size', 0):>7.0f} "
              f"{m.get('dns_query_log_drops_total', 0):>7.0f} {m.get('dns_query_log_written_total', 0):>11,.0f} "
              f"{rate:>8,.0f}", flush=True)  # fmt: skip
    h.wait(perf, 60)
    m = drained(engine, 120)
    summary = h.stop_engine(engine)
    result = parse_dnsperf(out)
    rows = count_rows(h.url)
    rss = [s[1] for s in samples] or [0.0]
    threads = sorted({s[2] for s in samples})
    queue = max((s[3] for s in samples), default=0)
    return [
        f"soak: {result.completed} answered ({result.qps:,.0f} QPS), {result.lost} lost; rows {rows}; "
        f"rundns: {summary}",
        f"  RSS {min(rss):.1f}-{max(rss):.1f} MiB, threads {threads}, max queue {queue:.0f}, "
        f"drops {m.get('dns_query_log_drops_total')}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checks", nargs="*", default=["all"], help=f"all, soak or any of {', '.join(CHECKS)}")
    parser.add_argument("--qps", type=int, default=5000, help="dnsperf rate (default 5000)")
    parser.add_argument("--duration", type=int, default=1800, help="soak seconds (default 1800)")
    parser.add_argument("--lock", type=int, default=OUTAGE_SECONDS, help="db-lock: seconds locked (default 30)")
    parser.add_argument("--prefill", type=int, default=1_000_000, help="db-lock: rows in the table at the start")
    parser.add_argument("--compare", metavar="REV", help="db-lock: measure git revision REV's engine first")
    args = parser.parse_args(argv)
    names = list(CHECKS) if "all" in args.checks else args.checks
    unknown = [n for n in names if n not in (*CHECKS, "soak")]
    if unknown:
        parser.error(f"unknown check {unknown[0]!r}")
    url = os.environ.get("DATABASE_URL", "")
    began = time.monotonic()
    lines = [
        f"machine: nproc={os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; "
        f"database {'PostgreSQL' if is_postgres(url) else 'SQLite (temporary file)'}; {' '.join(names)}"
    ]
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="gloryhole-faults-") as tmp:
        # Without DATABASE_URL: a throw-away SQLite file, never data/.
        url = url or f"sqlite:///{Path(tmp) / 'faults.sqlite3'}"
        h = Harness(Path(tmp), url)
        try:
            _, h.upstream = start_upstream(PY, h.work, h.procs)
            write_queries(h.queries, 60 * max(args.qps, 1000) * 2, BLOCKLIST_SIZE)
            h.prepare()
            for name in names:
                if name == "pg-down":
                    part = check_pg_down(h, args.qps)
                elif name == "kill9":
                    part = check_kill9(h, args.qps)
                elif name == "sigterm":
                    part = check_sigterm(h, args.qps, url, "PostgreSQL" if is_postgres(url) else "SQLite")
                    if is_postgres(url):
                        lite = f"sqlite:///{h.work / 'sigterm.sqlite3'}"
                        h.prepare(lite)
                        part += check_sigterm(h, args.qps, lite, "SQLite")
                elif name == "web-restart":
                    part = check_web_restart(h, args.qps)
                elif name == "db-lock":
                    template = h.work / "dblock-template.sqlite3"
                    h.prepare(f"sqlite:///{template}")
                    prefill_sqlite(template, args.prefill)
                    trees: list[tuple[str, Path | None]] = [("this tree", None)]
                    if args.compare:
                        trees.insert(0, (args.compare, revision_tree(h.work, args.compare)))
                    part = check_db_lock(h, args.qps, args.lock, template, trees)
                    if args.compare:
                        # Run once each, in this order: both answer the same dnsperf input and lock.
                        part.append(f"  (compared: {args.compare} first, then this tree)")
                    print(part[-1], flush=True)
                    lines += part
                    continue
                else:
                    part = soak(h, args.qps, args.duration)
                print("\n".join(part), flush=True)
                lines += part
        finally:
            h.procs.stop_all()
    print(f"took {time.monotonic() - began:.0f} s; load average {os.getloadavg()[0]:.2f}")
    return 1 if any("FAILED" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
