"""The query logger: the DNS path hands it one entry per answered query and never waits.

Flow: ``log_async(entry)`` appends to a bounded in-process queue (a full queue is a
counted drop), a fixed pool of writer threads takes up to a batch at a time and
writes it in one transaction (rows plus the dashboard rollups), retrying a failed
write with backoff and keeping the batch. A writer catching up on a backlog rests
between pieces of work (``CATCHUP_PAUSE_RATIO``); on SQLite the writers also keep the
WAL file small (``querylog.sqlite_wal``). ``close()`` stops intake, writes what was
queued and says how many entries were written, could not be written, and dropped.

Accounting: every entry handed to ``log_async`` ends in exactly one of *written*,
*dropped* (refused: queue full or logger closed), *unwritten* (accepted but given up
on: rejected by the database as invalid, or still queued when close() ran out of
time), or is forwarded to the logger that replaced this one (SIGHUP reconfigure).

Also here: ``ThreadPerQueryLogger``, the naive baseline (one thread and one insert
per query) kept as the rollback plan and the benchmark's comparison, and
``SwappableQueryLogger``, which the engine holds so SIGHUP can change mode, workers
or buffer without losing queued entries.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import chain
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)

from dnsengine.throttle import RateLimitedLog
from gloryhole_site.env import env_bool, env_float, env_int, env_str
from querylog.entry import QueryLogEntry
from querylog.models import QueryLog
from querylog.rollups import rollup_rows, rollup_write
from querylog.sqlite_wal import WalKeeper, WalStats, is_disk_full

log = logging.getLogger(__name__)

MODES = ("pool", "thread")

# Histogram upper bounds (the +Inf bucket is implicit).
QUEUE_DEPTH_BUCKETS: tuple[float, ...] = (0, 1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 500000)
BATCH_SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

# QueryLog columns the fast insert writes, in this order. The row builder below
# spells the same order out by hand (a generic per-field loop costs ~1 us a row);
# _check_columns() refuses to start if the model and this tuple disagree.
COLUMNS: tuple[str, ...] = (
    "timestamp", "client", "protocol", "domain", "qtype", "rcode", "status", "rule", "upstream", "duration_us",
    "engine",
)  # fmt: skip
_MAX_INT = 2147483647  # PositiveIntegerField is a 32-bit integer on PostgreSQL
_RATE_WINDOW = 10.0  # seconds of history behind write_rate


# ---------------------------------------------------------------------------------------
# Value objects


@dataclass(slots=True, frozen=True)
class CloseReport:
    written: int
    unwritten: int
    dropped: int


@dataclass(slots=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    counts: list[int]  # one per bound, +Inf last; not cumulative
    total: float  # sum of observed values

    def merged(self, other: HistogramSnapshot) -> HistogramSnapshot:
        if other.bounds != self.bounds:
            return self
        return HistogramSnapshot(
            self.bounds, [a + b for a, b in zip(self.counts, other.counts, strict=True)], self.total + other.total
        )


@dataclass(slots=True)
class QueryLogStats:
    """A consistent read of the logger's counters for /metrics and the heartbeat."""

    mode: str
    workers: int
    size: int  # entries queued (pool) or threads in flight (thread mode)
    capacity: int
    drops: int
    written: int
    write_errors: int  # failed write attempts (each retry counts)
    unwritten: int  # accepted but given up on
    write_rate: float  # rows/s over the last few seconds
    queue_depth: HistogramSnapshot
    batch_seconds: HistogramSnapshot


@dataclass(slots=True, frozen=True)
class QueryLogConfig:
    enabled: bool = True
    mode: str = "pool"
    buffer_size: int = 50000
    workers: int = 1
    batch_size: int = 2000
    flush_interval: float = 0.5
    rollups: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ImproperlyConfigured(f"GLORYHOLE_QUERY_LOG_MODE={self.mode!r}: use one of {', '.join(MODES)}")

    @classmethod
    def from_settings(cls) -> QueryLogConfig:
        return cls(
            enabled=settings.GLORYHOLE_QUERY_LOG_ENABLED,
            mode=settings.GLORYHOLE_QUERY_LOG_MODE.strip().lower(),
            buffer_size=settings.GLORYHOLE_QUERY_LOG_BUFFER,
            workers=settings.GLORYHOLE_QUERY_LOG_WORKERS,
            batch_size=settings.GLORYHOLE_QUERY_LOG_BATCH,
            flush_interval=settings.GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL,
            rollups=getattr(settings, "GLORYHOLE_QUERY_LOG_ROLLUPS", True),
        )

    @classmethod
    def from_environ(cls) -> QueryLogConfig:
        """Re-read the GLORYHOLE_QUERY_LOG_* variables from os.environ (for SIGHUP).

        settings.py read them once at import; a variable that is unset now keeps the
        value the process started with. Bounds repeat settings.py's on purpose: a bad
        value must raise here too, not slip into a running engine.
        """
        base = cls.from_settings()
        return cls(
            enabled=env_bool("GLORYHOLE_QUERY_LOG_ENABLED", base.enabled),
            mode=env_str("GLORYHOLE_QUERY_LOG_MODE", base.mode).strip().lower(),
            buffer_size=env_int("GLORYHOLE_QUERY_LOG_BUFFER", base.buffer_size, minimum=1, maximum=10_000_000),
            workers=env_int("GLORYHOLE_QUERY_LOG_WORKERS", base.workers, minimum=1, maximum=64),
            batch_size=env_int("GLORYHOLE_QUERY_LOG_BATCH", base.batch_size, minimum=1, maximum=100000),
            flush_interval=env_float(
                "GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL", base.flush_interval, minimum=0.01, maximum=60
            ),
            rollups=env_bool("GLORYHOLE_QUERY_LOG_ROLLUPS", base.rollups),
        )


class _Histogram:
    """Bucket counts kept by the writers (one update per batch, under the stats lock)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, list(self.counts), self.total)


# ---------------------------------------------------------------------------------------
# Writing a batch


def _check_columns() -> None:
    names = {f.name for f in QueryLog._meta.concrete_fields if not f.primary_key}
    if names != set(COLUMNS):
        raise ImproperlyConfigured(
            f"QueryLog fields {sorted(names)} differ from querylog.logger.COLUMNS {sorted(COLUMNS)}: "
            "update COLUMNS and the row builder together with the model"
        )


def _max_length(name: str) -> int:
    return QueryLog._meta.get_field(name).max_length


def _sqlite_utc_text() -> Callable[[float], str]:
    """float epoch -> exactly the text Django stores on SQLite for that aware datetime.

    Django stores ``str(naive UTC datetime)``; building that through
    ``datetime.fromtimestamp`` + ``str`` costs ~3 us a row here, most of a row's
    Python cost. The date-time part changes once a second, so it is cached; the
    microseconds are rounded as ``datetime.fromtimestamp`` rounds them (modf, then
    round-half-even), and a whole second has no fraction, as in ``str(datetime)``.
    """
    cache: dict[float, str] = {}
    modf = math.modf

    def to_db(ts: float) -> str:
        frac, whole = modf(ts)
        us = round(frac * 1e6)
        if us >= 1000000:
            us -= 1000000
            whole += 1.0
        elif us < 0:
            us += 1000000
            whole -= 1.0
        prefix = cache.get(whole)
        if prefix is None:
            if len(cache) > 4096:
                cache.clear()
            prefix = cache[whole] = str(datetime.fromtimestamp(whole, UTC).replace(tzinfo=None))
        return f"{prefix}.{us:06d}" if us else prefix

    return to_db


def timestamp_adapter(connection) -> Callable[[float], object]:
    """float epoch -> the value Django would pass to this backend for the aware datetime."""
    adapt = connection.ops.adapt_datetimefield_value
    fromtimestamp = datetime.fromtimestamp

    def generic(ts: float) -> object:
        return adapt(fromtimestamp(ts, UTC))

    if connection.vendor == "sqlite" and settings.USE_TZ and connection.timezone_name == "UTC":
        fast = _sqlite_utc_text()
        # Trust but verify: fall back to Django's own path if this Django stores
        # datetimes differently from what the fast path was written against.
        samples = (0.0, 1.5, 1700000000.0, 1700000000.000001, 1700000000.9999996, 1234567890.123456)
        if all(fast(ts) == generic(ts) for ts in samples):
            return fast
        log.warning("query log: SQLite datetime format changed; using the slower generic conversion")
    return generic


class _IpCache(dict):
    """client string -> database value via the field's own conversion, computed once per client.

    GenericIPAddressField normalises IPv6 text and PostgreSQL wants an Inet object;
    a network has few distinct clients, so a dict lookup replaces both per row.
    """

    def __init__(self, connection) -> None:
        super().__init__()
        self._field = QueryLog._meta.get_field("client")
        self._connection = connection

    def __missing__(self, client: str) -> object:
        if len(self) > 10000:
            self.clear()
        value = self[client] = self._field.get_db_prep_save(client, self._connection)
        return value


def _clamp_int(value: int) -> int:
    value = int(value)
    return 0 if value < 0 else min(value, _MAX_INT)


_sqlite_write_locks: dict[str, threading.Lock] = {}
_sqlite_write_locks_guard = threading.Lock()


def sqlite_write_lock(using: str = DEFAULT_DB_ALIAS) -> threading.Lock | None:
    """A process-wide lock our SQLite writers take around each write transaction.

    SQLite has one writer at a time; without this, a second writer thread waits in
    SQLite's busy handler, which sleeps in steps of up to 100 ms. With it, writers
    queue on a Python lock and the next one starts the moment the previous commits,
    while building its rows outside the lock. None for other databases.
    """
    if connections[using].vendor != "sqlite":
        return None
    with _sqlite_write_locks_guard:
        return _sqlite_write_locks.setdefault(using, threading.Lock())


class BatchWriter(Protocol):
    def __call__(self, entries: Sequence[QueryLogEntry]) -> None: ...


WRITE_METHODS = ("values", "executemany", "bulk_create", "copy")


def default_write_method(vendor: str) -> str:
    """The write method a backend gets unless one is asked for (figures: docs/scale-out.md)."""
    # PostgreSQL: COPY streams the rows with no statement to parse or plan per batch
    # and no bind-parameter limit. SQLite has no COPY.
    return "copy" if vendor == "postgresql" else "values"


WRITER_BUSY_TIMEOUT_MS = 1000


class QueryLogWriter:
    """Writes a batch of entries as QueryLog rows (and rollups) in one transaction.

    The method defaults per backend (``default_write_method``): ``"copy"`` on
    PostgreSQL, ``"values"`` elsewhere. ``"copy"`` streams the batch's row tuples
    with ``COPY ... FROM STDIN`` (psycopg 3; PostgreSQL only). ``"values"`` builds
    the same row tuples and runs one multi-row
    ``INSERT ... VALUES (...), (...)`` per batch, generated from the model's fields,
    with values converted as Django converts them for the backend (see
    ``execute_values``). ``"executemany"`` runs one prepared single-row INSERT per
    row: about as fast when the writer has the process to itself, but the sqlite3
    module releases and re-takes the GIL around every row, and with busy listener
    threads each re-take waits (with two busy listener-like threads, median of 7
    runs: ~7.5k rows/s against ~28k for "values"; ``make bench``).
    ``"bulk_create"`` is the plain ORM path, kept for comparison: on SQLite it
    splits a batch into INSERTs of ~90 rows (999 parameters) and makes ~11 Python
    calls per value.
    """

    def __init__(
        self,
        engine_name: str = "",
        *,
        rollups: bool = True,
        method: str | None = None,
        using: str = DEFAULT_DB_ALIAS,
        abandon: threading.Event | None = None,
    ) -> None:
        vendor = connections[using].vendor
        method = method or default_write_method(vendor)
        if method not in WRITE_METHODS:
            raise ValueError(f"unknown write method {method!r}")
        if method == "copy" and vendor != "postgresql":
            raise ValueError(f"write method 'copy' needs PostgreSQL, not {vendor}")
        _check_columns()
        self.engine_name = engine_name[: _max_length("engine")]
        self.rollups = rollups
        self.method = method
        self.using = using
        self._prepared: tuple[str, Callable[[Sequence[QueryLogEntry]], list[tuple]]] | None = None
        self._copy_target = ""
        self._lock = sqlite_write_lock(using)
        # Set by the logger's close() when it runs out of time: a write that was still
        # waiting for the lock must not land after close() has counted it as unwritten.
        self._abandon = abandon

    def _start_write(self) -> None:
        """Under the write lock, before the transaction: may this write go ahead?"""
        if self._abandon is not None and self._abandon.is_set():
            raise WriteAbandoned
        connection = connections[self.using]
        if connection.vendor == "sqlite":
            # A locked database makes SQLite wait inside the call, where close() cannot
            # interrupt it (sqlite3's interrupt() does not cut a busy wait short). So the
            # writers wait at most WRITER_BUSY_TIMEOUT_MS there; the retry loop does the
            # rest of the waiting, and checks between tries whether to give up.
            # (A shorter configured timeout, as in the tests, stays.)
            configured_ms = int(float(connection.settings_dict["OPTIONS"].get("timeout", 5)) * 1000)
            with connection.wrap_database_errors:
                connection.ensure_connection()
                connection.connection.execute(f"PRAGMA busy_timeout = {min(configured_ms, WRITER_BUSY_TIMEOUT_MS)}")

    def __call__(self, entries: Sequence[QueryLogEntry], pacer: Pacer | None = None) -> None:
        """Write ``entries``; with a ``pacer`` (the logger is catching up), in pieces with rests between."""
        rollups = rollup_rows(entries) if self.rollups else None
        if self.method == "bulk_create":
            objs = [querylog_from_entry(e, self.engine_name) for e in entries]
            with self._write_transaction():
                QueryLog.objects.using(self.using).bulk_create(objs)
                if rollups is not None:
                    rollup_write(rollups, using=self.using)
            return
        head, build = self._prepare()
        connection = connections[self.using]
        if pacer is not None and self.method == "values" and connection.vendor == "sqlite":
            self._write_in_pieces(connection, head, build, entries, rollups, pacer)
            return
        rows = build(entries)
        # Rows and rollups are built above, outside the lock and the transaction:
        # the write lock is held only while the database works.
        with self._write_transaction():
            if self.method == "copy":
                execute_copy(connection, self._copy_target, rows)
            elif self.method == "values":
                execute_values(connection, head, len(COLUMNS), rows)
            else:
                with connection.cursor() as cursor:
                    cursor.executemany(f"{head} VALUES ({', '.join(['%s'] * len(COLUMNS))})", rows)
            if rollups is not None:
                rollup_write(rollups, using=self.using)

    def _write_in_pieces(self, connection, head: str, build, entries, rollups, pacer: Pacer) -> None:
        # Catching up: rows are built and inserted CATCHUP_PIECE_ROWS at a time, with a
        # rest after each piece, so the DNS thread never waits behind more than one
        # piece's work (CPU, and the GIL while rows are built and bound). One
        # transaction still: per-batch costs (commit, rollup upserts) stay per batch.
        with self._write_transaction():
            for i in range(0, len(entries), CATCHUP_PIECE_ROWS):
                if i:
                    self._rest(pacer)
                execute_values(connection, head, len(COLUMNS), build(entries[i : i + CATCHUP_PIECE_ROWS]))
            if rollups is not None:
                self._rest(pacer)
                rollup_write(rollups, using=self.using)

    def _rest(self, pacer: Pacer) -> None:
        # Inside the transaction: a close() that ran out of time meanwhile must not see
        # this write land after it counted the batch as unwritten (its interrupt only
        # reaches a statement that is running).
        if pacer.rest(self._abandon):
            raise WriteAbandoned

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """The write lock (SQLite), the go-ahead check, then one transaction."""
        with self._lock if self._lock is not None else _NO_LOCK:
            self._start_write()
            with transaction.atomic(using=self.using):
                yield

    def _prepare(self) -> tuple[str, Callable[[Sequence[QueryLogEntry]], list[tuple]]]:
        # Built on first use, not in __init__, so constructing a logger never needs
        # the database configured; every thread shares the result (the adapters
        # depend on the backend, not on one connection's state).
        if self._prepared is None:
            connection = connections[self.using]
            qn = connection.ops.quote_name
            table = qn(QueryLog._meta.db_table)
            columns = ", ".join(qn(QueryLog._meta.get_field(name).column) for name in COLUMNS)
            self._copy_target = f"{table} ({columns})"
            self._prepared = (f"INSERT INTO {table} ({columns})", _row_builder(connection, self.engine_name))
        return self._prepared


_PG_MAX_PARAMS = 65535  # bind parameters per statement in PostgreSQL's protocol
_flatten = chain.from_iterable


# SQLite statements: a batch goes as pieces of SQLITE_CHUNK_ROWS rows (the default
# batch, so a full batch is one statement) and a rest cut into power-of-two row counts.
# sqlite3 keeps the last 128 prepared statements of a connection, and a statement per
# distinct row count made every batch a new one, compiled afresh and cached: at 10k
# QPS, with batches of every size, those cached multi-thousand-row statements held
# ~100 MiB of SQLite's heap and churned malloc (`make soak` prints it). Now a table
# has at most a dozen statements, each compiled once per connection
# (`make bench-statements`). Pieces of at most 256 rows, tried first, made every full
# batch ten statements, and the pool lost full-speed QPS in `make loadtest`: each
# statement is one more GIL release and re-take for the DNS thread to wait through.
SQLITE_CHUNK_ROWS = 2000
_REUSE_SQLITE_STATEMENTS = True  # False: one statement per batch, as before (benchmark only)


def _sqlite_chunk_sizes(n: int, most: int) -> list[int]:
    """Row counts that add up to `n`: pieces of min(most, SQLITE_CHUNK_ROWS), then powers of two."""
    if not _REUSE_SQLITE_STATEMENTS:
        return [min(most, n - i) for i in range(0, n, most)]
    top = min(most, SQLITE_CHUNK_ROWS)
    sizes = [top] * (n // top)
    rest = n % top
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


@functools.lru_cache(maxsize=256)
def _sqlite_values_sql(head: str, width: int, rows: int, tail: str) -> str:
    # The same str object each time: its hash is computed once, and sqlite3 finds its
    # cached statement without building a ~20 kB string per piece.
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}{tail}"


def execute_values(connection, head: str, width: int, rows: Sequence[Sequence], tail: str = "") -> None:
    """Run ``{head} VALUES (...), (...), ...{tail}`` for ``rows`` in a few multi-row statements.

    A few statements per batch means a few trips into the database driver, so a
    few GIL releases and re-takes per batch instead of one per row. On SQLite the
    batch goes in reusable pieces (see SQLITE_CHUNK_ROWS) to the DB-API cursor
    with ``?`` marks, skipping Django's per-execute ``%s`` -> ``?`` regex over a
    large statement; errors still come out as django.db exceptions
    (``wrap_database_errors``). Other backends take as few statements as their
    parameter limit allows, through Django's cursor unchanged.
    """
    if not rows:
        return
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection
        limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(raw, "getlimit") else 999
        with connection.wrap_database_errors:
            cursor = raw.cursor()
            try:
                i = 0
                for size in _sqlite_chunk_sizes(len(rows), max(1, limit // width)):
                    chunk = rows[i : i + size]
                    i += size
                    cursor.execute(_sqlite_values_sql(head, width, size, tail), list(_flatten(chunk)))
            finally:
                cursor.close()
        return
    limit = connection.features.max_query_params or _PG_MAX_PARAMS
    one = "(" + ", ".join(["%s"] * width) + ")"
    per = max(1, min(len(rows), limit // width))
    with connection.cursor() as cursor:
        for i in range(0, len(rows), per):
            chunk = rows[i : i + per]
            cursor.execute(f"{head} VALUES {', '.join([one] * len(chunk))}{tail}", list(_flatten(chunk)))


def execute_copy(connection, target: str, rows: Sequence[Sequence]) -> None:
    """``COPY {target} FROM STDIN`` with ``rows``: PostgreSQL (psycopg 3) only.

    psycopg adapts each value as a parameter of the same type would be (datetime,
    ip_address, int, str), so the row tuples are those ``execute_values`` takes.
    The raw psycopg cursor is used because Django's cursor has no ``copy``;
    errors still come out as django.db exceptions.
    """
    if not rows:
        return
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {target} FROM STDIN") as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)


# Catching up (a backlog after the database was locked or down): a writer that finds a
# full batch still queued after taking one rests between pieces of work, as long as the
# piece took times CATCHUP_PAUSE_RATIO (1.0: writing at most half the time), so the DNS
# thread keeps its share of the CPU and the GIL. Only while that still drains the
# backlog (QueryLogger._run); a full batch at steady load is written as before.
# Measured: docs/querylog.md, "Catch-up after a database lock". 0 turns pacing off.
CATCHUP_PAUSE_RATIO = 1.0
CATCHUP_PIECE_ROWS = 512  # rows per INSERT while catching up: a power of two, see _sqlite_chunk_sizes
_CATCHUP_MAX_REST = 0.25  # seconds; a checkpoint inside a commit can make one piece slow


class Pacer:
    """Rests a writer thread for as long as it worked since its last rest, times ``ratio``.

    Wall time, not CPU time: on a busy machine a piece takes longer and the rest grows
    with it. One per writer thread.
    """

    __slots__ = ("_since", "ratio")

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self._since = time.perf_counter()

    def start(self) -> None:
        self._since = time.perf_counter()

    def rest(self, abandon: threading.Event | None = None) -> bool:
        """Sleep; True if ``abandon`` was set before or during the rest."""
        pause = min(_CATCHUP_MAX_REST, (time.perf_counter() - self._since) * self.ratio)
        if pause > 0:
            if abandon is not None:
                if abandon.wait(pause):
                    return True
            else:
                time.sleep(pause)
        self._since = time.perf_counter()
        return abandon is not None and abandon.is_set()


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def _row_builder(connection, engine_name: str) -> Callable[[Sequence[QueryLogEntry]], list[tuple]]:
    ts = timestamp_adapter(connection)
    ips = _IpCache(connection)
    # CharFields: Django passes str through unchanged; cutting to max_length keeps
    # PostgreSQL (which enforces it, unlike SQLite) from rejecting a whole batch.
    lp, ld, lq, lr, ls, lru, lu = (
        _max_length(n) for n in ("protocol", "domain", "qtype", "rcode", "status", "rule", "upstream")
    )
    engine = engine_name
    max_int = _MAX_INT

    def build(entries: Sequence[QueryLogEntry]) -> list[tuple]:
        return [
            (
                ts(e.timestamp),
                ips[e.client],
                e.protocol[:lp],
                e.domain[:ld],
                e.qtype[:lq],
                e.rcode[:lr],
                e.status[:ls],
                e.rule[:lru],
                e.upstream[:lu],
                d if (d := e.duration_us).__class__ is int and 0 <= d <= max_int else _clamp_int(d),
                engine,
            )
            for e in entries
        ]

    if connection.vendor != "postgresql":
        return build
    domain_at = COLUMNS.index("domain")

    def build_without_nul(entries: Sequence[QueryLogEntry]) -> list[tuple]:
        # PostgreSQL text cannot hold a NUL byte, and a query name can carry one (a label
        # is any bytes): one such entry would push its whole batch into row-at-a-time
        # writes. Written as DNS presentation format writes it; SQLite stores NUL as is.
        rows = build(entries)
        for i, e in enumerate(entries):
            if "\x00" in e.domain:
                row = list(rows[i])
                row[domain_at] = without_nul(e.domain)[:ld]
                rows[i] = tuple(row)
        return rows

    return build_without_nul


def without_nul(text: str) -> str:
    """``text`` with each NUL written ``\\000``, as in a DNS name's presentation format."""
    return text.replace("\x00", "\\000")


def querylog_from_entry(entry: QueryLogEntry, engine_name: str = "") -> QueryLog:
    """The model instance for an entry, with the same cuts as the fast path."""
    return QueryLog(
        timestamp=datetime.fromtimestamp(entry.timestamp, UTC),
        client=entry.client,
        protocol=entry.protocol[: _max_length("protocol")],
        domain=entry.domain[: _max_length("domain")],
        qtype=entry.qtype[: _max_length("qtype")],
        rcode=entry.rcode[: _max_length("rcode")],
        status=entry.status[: _max_length("status")],
        rule=entry.rule[: _max_length("rule")],
        upstream=entry.upstream[: _max_length("upstream")],
        duration_us=_clamp_int(entry.duration_us),
        engine=engine_name[: _max_length("engine")],
    )


# ---------------------------------------------------------------------------------------
# Loggers


# A writer thread keeps its connection across batches rather than calling
# close_old_connections() per batch: with CONN_MAX_AGE=0 that reconnects (and reruns
# the PRAGMAs) every batch, and closing the last connection to a WAL database
# checkpoints and deletes the WAL. Measured: ~44k -> ~58k rows/s without rollups.
# The connection is dropped after any failed write and renewed after this long.
_CONNECTION_MAX_AGE = 300.0


def _reset_connections() -> None:
    """Close this thread's database connections; the next query reconnects."""
    try:
        connections.close_all()
    except Exception:  # closing a broken connection can itself fail; it is gone either way
        log.debug("query log: error closing a connection", exc_info=True)


class WriteAbandoned(Exception):
    """The logger gave up on its writes (close() ran out of time) before this one began."""


def _interrupt(connection) -> None:
    """Abort the statement `connection` (a Django connection of another thread) is running.

    Both drivers allow this from another thread: sqlite3's interrupt() and psycopg's
    cancel_safe(). The statement fails, its transaction rolls back, and the writer counts
    the batch as unwritten; so close()'s report stays exact.
    """
    raw = connection.connection
    if raw is None:
        return
    try:
        if connection.vendor == "sqlite":
            raw.interrupt()
        elif connection.vendor == "postgresql":
            cancel_safe = getattr(raw, "cancel_safe", None)  # psycopg >= 3.2; cancel() before
            if cancel_safe is not None:
                cancel_safe(timeout=_ABANDON_GRACE)
            else:
                raw.cancel()
    except Exception:  # the connection is closing or broken: nothing runs on it
        log.debug("query log: could not interrupt a write", exc_info=True)


# Seconds close() waits, after abandoning, for writers to notice and settle their entries
# (longer than a writer's SQLite busy wait, WRITER_BUSY_TIMEOUT_MS).
_ABANDON_GRACE = 2.0


class _Outcome(enum.Enum):
    WRITTEN = 1
    INVALID = 2  # the database refused the data itself: retrying will not help
    ABANDONED = 3  # close() ran out of time while the database kept failing


class _LoggerBase:
    """Counters, retries and the give-up path shared by the pool and thread loggers."""

    mode = ""

    def __init__(
        self,
        buffer_size: int,
        *,
        writer: BatchWriter | None,
        engine_name: str,
        rollups: bool,
        retry_initial: float,
        retry_max: float,
    ) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self._capacity = buffer_size
        # Intake limit: the capacity while open, 0 once closed, so the hot path's one
        # length check also refuses entries after close().
        self._limit = buffer_size
        self._abandon = threading.Event()
        self._writer: BatchWriter = writer or QueryLogWriter(engine_name, rollups=rollups, abandon=self._abandon)
        # Django connection of each thread inside a write, so close() can interrupt them.
        self._writing: dict[int, object] = {}
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stats_lock = threading.Lock()
        self._drops = 0
        self._written = 0
        self._write_errors = 0
        self._unwritten = 0
        self._inflight = 0  # entries taken off the queue and not yet settled
        self._depth = _Histogram(QUEUE_DEPTH_BUCKETS)
        self._batch_seconds = _Histogram(BATCH_SECONDS_BUCKETS)
        self._rate_window: deque[tuple[float, int]] = deque()
        self._created = time.monotonic()
        self._successor: QueryLoggerLike | None = None
        self._report: CloseReport | None = None
        self._close_lock = threading.Lock()
        self._warn = RateLimitedLog(log, 5.0)
        self._error_log = RateLimitedLog(log, 5.0)
        # SQLite only, and only with a writer that says which database it writes.
        using = getattr(self._writer, "using", None)
        self._wal = (
            WalKeeper(using, sqlite_write_lock(using))
            if using is not None and connections[using].vendor == "sqlite"
            else None
        )

    # -- read side ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def drops(self) -> int:
        return self._drops

    @property
    def written(self) -> int:
        return self._written

    @property
    def write_errors(self) -> int:
        return self._write_errors

    @property
    def unwritten(self) -> int:
        return self._unwritten

    @property
    def closed(self) -> bool:
        return self._limit == 0

    @property
    def size(self) -> int:
        raise NotImplementedError

    @property
    def workers(self) -> int:
        raise NotImplementedError

    @property
    def wal_stats(self) -> WalStats:
        """WAL truncations so far (all zero off SQLite or with a writer of another kind)."""
        return replace(self._wal.stats) if self._wal is not None else WalStats()

    @property
    def write_rate(self) -> float:
        with self._stats_lock:
            return self._rate_locked(time.monotonic())

    def _rate_locked(self, now: float) -> float:
        window = self._rate_window
        while window and window[0][0] < now - _RATE_WINDOW:
            window.popleft()
        span = min(_RATE_WINDOW, max(now - self._created, 1e-3))
        return sum(n for _, n in window) / span

    def stats(self) -> QueryLogStats:
        with self._stats_lock:
            return QueryLogStats(
                mode=self.mode,
                workers=self.workers,
                size=self.size,
                capacity=self._capacity,
                drops=self._drops,
                written=self._written,
                write_errors=self._write_errors,
                unwritten=self._unwritten,
                write_rate=self._rate_locked(time.monotonic()),
                queue_depth=self._depth.snapshot(),
                batch_seconds=self._batch_seconds.snapshot(),
            )

    # -- intake refusals -----------------------------------------------------------------

    def _refuse(self, entry: QueryLogEntry) -> bool:
        if self._limit == 0:
            successor = self._successor
            if successor is not None:
                # Replaced on SIGHUP: a listener that fetched our log_async just before
                # the swap still gets its entry logged.
                return successor.log_async(entry)
        with self._stats_lock:
            self._drops += 1
        if self._limit:
            self._warn.log(
                logging.WARNING,
                "query log buffer full (%d/%d): dropping entries, %d dropped so far",
                self.size,
                self._capacity,
                self._drops,
            )
        return False

    def _give_up(self, entries: Sequence[QueryLogEntry]) -> None:
        """Entries accepted but not written: hand them on if replaced, else count them."""
        successor = self._successor
        if successor is not None:
            for entry in entries:
                successor.log_async(entry)
            return
        with self._stats_lock:
            self._unwritten += len(entries)
        if entries:
            log.error("query log: %d accepted entries could not be written", len(entries))

    # -- writing -----------------------------------------------------------------------

    def _deliver(self, batch: list[QueryLogEntry], depth: int, pacer: Pacer | None = None) -> None:
        """Write one batch, retrying transient failures; settle every entry in it."""
        with self._stats_lock:
            self._inflight += len(batch)
        try:
            started = time.perf_counter()
            outcome = self._attempt(batch, pacer)
            if outcome is _Outcome.WRITTEN:
                self._record(len(batch), time.perf_counter() - started, depth)
            elif outcome is _Outcome.ABANDONED:
                self._give_up(batch)
            else:
                self._deliver_one_by_one(batch, depth)
        finally:
            with self._stats_lock:
                self._inflight -= len(batch)

    def _deliver_one_by_one(self, batch: list[QueryLogEntry], depth: int) -> None:
        # Something in the batch is invalid for the database (say, a NUL byte on
        # PostgreSQL): write the entries one at a time so one bad entry costs one row.
        for i, entry in enumerate(batch):
            started = time.perf_counter()
            outcome = self._attempt([entry])
            if outcome is _Outcome.WRITTEN:
                self._record(1, time.perf_counter() - started, depth)
            elif outcome is _Outcome.ABANDONED:
                self._give_up(batch[i:])
                return
            else:
                with self._stats_lock:
                    self._unwritten += 1
                self._error_log.log(logging.ERROR, "query log: rejected entry %r", entry)

    def _attempt(self, entries: list[QueryLogEntry], pacer: Pacer | None = None) -> _Outcome:
        delay = self._retry_initial
        attempt = 0
        using = getattr(self._writer, "using", None)
        # Only our writer writes in paced pieces; any other callable gets the batch.
        write = (
            functools.partial(self._writer, pacer=pacer) if isinstance(self._writer, QueryLogWriter) else self._writer
        )
        while True:
            attempt += 1
            if self._abandon.is_set():
                return _Outcome.ABANDONED
            if using is not None:
                with self._stats_lock:
                    self._writing[threading.get_ident()] = connections[using]
            disk_full = False
            try:
                if pacer is not None:
                    pacer.start()
                write(entries)
                return _Outcome.WRITTEN
            except WriteAbandoned:
                return _Outcome.ABANDONED
            except (OperationalError, InterfaceError) as exc:
                if self._abandon.is_set():
                    return _Outcome.ABANDONED  # interrupted by close(), or failing anyway
                # Locked/busy SQLite, a PostgreSQL restart, a dropped connection, a full
                # disk: it can succeed later, so keep the batch and try again.
                self._count_error()
                disk_full = is_disk_full(exc)
                self._error_log.log(
                    logging.WARNING,
                    "query log write failed (attempt %d, %d entries), retrying in %.2f s: %s",
                    attempt,
                    len(entries),
                    delay,
                    exc,
                )
            except Exception as exc:
                self._count_error()
                self._error_log.log(
                    logging.ERROR,
                    "query log write failed (%d entries), not retrying: %s: %s",
                    len(entries),
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
                _reset_connections()
                return _Outcome.INVALID
            finally:
                if using is not None:
                    with self._stats_lock:
                        self._writing.pop(threading.get_ident(), None)
            # The next attempt starts on a new connection: the old one may be dead
            # (PostgreSQL restart) or stuck in a failed transaction.
            _reset_connections()
            if self._wal is not None:
                if disk_full:
                    self._wal.disk_full()  # give the WAL's space back now, not after the retries
                else:
                    self._wal.mark("after failed writes")
            if self._abandon.wait(delay):
                return _Outcome.ABANDONED
            if disk_full and self._wal is not None:
                # Again before the retry: space freed meanwhile goes to the WAL's checkpoint
                # first. On a volume with no byte left the checkpoint cannot grow the
                # database file by the WAL's new pages and fails too; it is tried each time.
                self._wal.disk_full()
            delay = min(delay * 2, self._retry_max)

    def _abandon_writes(self) -> None:
        """close() is out of time: no write may begin from now on, and those running are aborted."""
        self._abandon.set()
        with self._stats_lock:
            running = list(self._writing.values())
        for connection in running:
            _interrupt(connection)

    def _count_error(self) -> None:
        with self._stats_lock:
            self._write_errors += 1

    def _record(self, n: int, seconds: float, depth: int) -> None:
        now = time.monotonic()
        with self._stats_lock:
            self._written += n
            self._batch_seconds.observe(seconds)
            self._depth.observe(depth)
            self._rate_window.append((now, n))
            if len(self._rate_window) > 4096:
                self._rate_locked(now)


class QueryLogger(_LoggerBase):
    """Bounded queue drained by a fixed pool of writer threads.

    ``log_async`` is the DNS hot path: a deque length check and an append (~0.1 us,
    see ``make bench``); no lock, no condition variable. Writers are woken when a
    batch is ready (one Event.set per batch, not per entry) and otherwise poll every
    ``flush_interval``, so an entry waits at most about that long before its write.

    With several listener threads the bound can be overshot by at most one entry per
    thread (check and append are two steps); capacity is a memory bound, not an
    exact contract.
    """

    mode = "pool"

    def __init__(
        self,
        buffer_size: int,
        workers: int,
        batch_size: int,
        flush_interval: float,
        engine_name: str = "",
        *,
        rollups: bool = True,
        writer: BatchWriter | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        super().__init__(
            buffer_size,
            writer=writer,
            engine_name=engine_name,
            rollups=rollups,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )
        if workers < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("workers and batch_size must be at least 1 and flush_interval positive")
        self._workers = workers
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue: deque[QueryLogEntry] = deque()
        self._warn_at = max(1, int(buffer_size * 0.8))
        # The hot path calls _nudge() only past this length: to wake writers for a
        # full batch, to warn about the fill level, or after close() (set to 0).
        # _nudge() raises it until a writer takes the batch, so a backlog does not
        # send every call down the slow path.
        self._nudge_base = min(batch_size, self._warn_at)
        self._nudge_at = self._nudge_base
        self._nudge_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._sweep_lock = threading.Lock()
        self._swept = False

    @property
    def size(self) -> int:
        return len(self._queue)

    @property
    def workers(self) -> int:
        return self._workers

    def start(self) -> QueryLogger:
        with self._close_lock:
            if self._threads or self._report is not None:
                return self
            for i in range(self._workers):
                thread = threading.Thread(target=self._run, name=f"querylog-writer-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def log_async(self, entry: QueryLogEntry) -> bool:
        """Queue an entry for writing; never blocks. False when dropped (queue full)."""
        queue = self._queue
        if len(queue) < self._limit:
            queue.append(entry)
            if len(queue) >= self._nudge_at:
                self._nudge()
            return True
        return self._refuse(entry)

    def _nudge(self) -> None:
        if self._limit == 0:
            self._late_sweep()
            return
        n = len(self._queue)
        if n >= self._warn_at:
            self._warn.log(
                logging.WARNING,
                "query log buffer %d%% full (%d/%d), %d dropped so far",
                n * 100 // self._capacity,
                n,
                self._capacity,
                self._drops,
            )
        self._wake.set()
        with self._nudge_lock:
            if self._limit:  # never undo close()'s 0
                self._nudge_at = self._warn_at if n < self._warn_at else self._capacity + 1

    def _rearm(self) -> None:
        with self._nudge_lock:
            if self._limit:
                self._nudge_at = self._nudge_base

    def _late_sweep(self) -> None:
        # A listener passed the open check just before close() and appended after
        # close()'s final sweep: nothing would ever take that entry, so settle it here.
        with self._sweep_lock:
            if self._swept:
                self._give_up(self._take_all())

    def _take(self, limit: int) -> list[QueryLogEntry]:
        queue = self._queue
        pop = queue.popleft
        batch: list[QueryLogEntry] = []
        append = batch.append
        try:
            for _ in range(min(limit, len(queue))):
                append(pop())
        except IndexError:  # another writer emptied it first
            pass
        return batch

    def _take_all(self) -> list[QueryLogEntry]:
        return self._take(len(self._queue) + 1_000_000)

    def _run(self) -> None:
        queue = self._queue
        batch_size = self._batch_size
        wal = self._wal
        pacer = Pacer(CATCHUP_PAUSE_RATIO) if CATCHUP_PAUSE_RATIO > 0 else None
        affordable = True  # may the next catch-up batch be paced (see below)
        connected_at = time.monotonic()
        try:
            while True:
                batch: list[QueryLogEntry] = []
                try:
                    if len(queue) < batch_size and not self._stopping:
                        if wal is not None:
                            wal.tend(idle=not queue)
                        self._wake.wait(self._flush_interval)
                        self._wake.clear()
                    depth = len(queue)
                    batch = self._take(batch_size)
                    if not batch:
                        if self._stopping:
                            return
                        continue
                    self._rearm()
                    if wal is not None and depth >= _WAL_BACKLOG_BATCHES * batch_size:
                        wal.mark("after a backlog")
                    # Catching up: another full batch waits behind this one. Not while
                    # stopping: the listeners are closed and close() has a deadline.
                    catching_up = pacer is not None and len(queue) >= batch_size and not self._stopping
                    paced = catching_up and affordable
                    self._deliver(batch, depth, pacer if paced else None)
                    # Rests must never make a backlog grow: they go on only while the queue
                    # shrank by a quarter batch or more over the last batch; otherwise the
                    # next batch is written at full speed (and rests again if that drained).
                    affordable = not catching_up or len(queue) <= depth - len(batch) // 4
                    if paced and affordable and len(queue) >= batch_size and not self._stopping:
                        pacer.rest()
                    if time.monotonic() - connected_at > _CONNECTION_MAX_AGE:
                        _reset_connections()
                        connected_at = time.monotonic()
                except Exception:
                    # A bug, not a database error (those are handled in _attempt).
                    # Keep the thread: a dead writer would silently stop all logging.
                    log.exception("query log writer %s: unexpected error", threading.current_thread().name)
                    self._give_up(batch)
        finally:
            connections.close_all()  # this thread's connections only

    def close(self, timeout: float = 30.0) -> CloseReport:
        """Stop intake, write everything queued, join the writers within ``timeout`` seconds."""
        with self._close_lock:
            if self._report is not None:
                return self._report
            deadline = time.monotonic() + timeout
            # Both under the nudge lock, so no _nudge() can raise _nudge_at again: an
            # append that lands after intake closed must always reach _late_sweep.
            with self._nudge_lock:
                self._nudge_at = 0
                self._limit = 0
            self._stopping = True
            if not self._threads:  # never started: start writers just to drain
                for i in range(self._workers):
                    thread = threading.Thread(target=self._run, name=f"querylog-writer-{i}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._wake.set()
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if any(t.is_alive() for t in self._threads):
                # Out of time (the database keeps failing or stays locked): writers stop
                # retrying, a write inside the database is interrupted, and their batches
                # count as unwritten. A writer that still does not return (a driver that
                # ignores the interrupt) is counted through _inflight below.
                self._abandon_writes()
                for thread in self._threads:
                    thread.join(_ABANDON_GRACE)
            with self._sweep_lock:
                leftover = self._take_all()
                self._swept = True
            self._give_up(leftover)
            with self._stats_lock:
                stuck = self._inflight if any(t.is_alive() for t in self._threads) else 0
                self._report = CloseReport(
                    written=self._written, unwritten=self._unwritten + stuck, dropped=self._drops
                )
            if self._report.unwritten:
                log.error("query log closed with %d entries unwritten", self._report.unwritten)
            return self._report


# A queue this many batches deep is a backlog: once drained, the WAL it grew is truncated.
_WAL_BACKLOG_BATCHES = 5


# Thread mode on a database server: threads holding a connection at once.
THREAD_MODE_MAX_CONNECTIONS = 10


class ThreadPerQueryLogger(_LoggerBase):
    """The naive baseline: one new thread per entry, each inserting one row.

    Kept as the seed's rollback plan (GLORYHOLE_QUERY_LOG_MODE=thread) and as the
    benchmark's comparison. Each thread opens its own database connection, which is
    most of its cost. ``buffer_size`` caps the threads in flight so an overload is
    counted drops instead of an unbounded pile of threads.
    """

    mode = "thread"

    def __init__(
        self,
        buffer_size: int,
        workers: int = 0,
        batch_size: int = 1,
        flush_interval: float = 0.0,
        engine_name: str = "",
        *,
        rollups: bool = True,
        writer: BatchWriter | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        # workers/batch_size/flush_interval: accepted so both loggers build from the
        # same arguments; a thread per entry has no pool and no batches.
        super().__init__(
            buffer_size,
            writer=writer,
            engine_name=engine_name,
            rollups=rollups,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._threads_in_flight = 0
        # Each thread opens its own connection. On SQLite they then queue on
        # sqlite_write_lock; on PostgreSQL nothing would cap them, and a burst would
        # take every connection the server allows (max_connections, 100 by default)
        # from the web process and the other engines.
        self._connection_slots = (
            threading.BoundedSemaphore(THREAD_MODE_MAX_CONNECTIONS)
            if connections[DEFAULT_DB_ALIAS].vendor != "sqlite"
            else _NO_LOCK
        )

    @property
    def size(self) -> int:
        return self._threads_in_flight

    @property
    def workers(self) -> int:
        return 0

    def start(self) -> ThreadPerQueryLogger:
        return self

    def log_async(self, entry: QueryLogEntry) -> bool:
        with self._lock:
            accepted = self._threads_in_flight < self._limit
            if accepted:
                self._threads_in_flight += 1
        if not accepted:
            return self._refuse(entry)
        try:
            threading.Thread(target=self._run_one, args=(entry,), name="querylog-thread", daemon=True).start()
        except RuntimeError:  # can't start new thread: the system is out of them
            self._settle_thread()
            with self._stats_lock:
                self._drops += 1
            return False
        return True

    def _run_one(self, entry: QueryLogEntry) -> None:
        try:
            with self._connection_slots:
                try:
                    self._deliver([entry], self._threads_in_flight)
                finally:
                    connections.close_all()
        except Exception:
            log.exception("query log thread: unexpected error")
            self._give_up([entry])
        finally:
            self._settle_thread()

    def _settle_thread(self) -> None:
        with self._lock:
            self._threads_in_flight -= 1
            if self._threads_in_flight == 0:
                self._idle.notify_all()

    def close(self, timeout: float = 30.0) -> CloseReport:
        with self._close_lock:
            if self._report is not None:
                return self._report
            deadline = time.monotonic() + timeout
            with self._lock:
                self._limit = 0
                self._idle.wait_for(lambda: self._threads_in_flight == 0, max(0.0, deadline - time.monotonic()))
                stuck = self._threads_in_flight
            if stuck:
                self._abandon_writes()
                with self._lock:
                    self._idle.wait_for(lambda: self._threads_in_flight == 0, _ABANDON_GRACE)
                    stuck = self._threads_in_flight
            with self._stats_lock:
                self._report = CloseReport(
                    written=self._written, unwritten=self._unwritten + stuck, dropped=self._drops
                )
            return self._report


class DisabledQueryLogger:
    """GLORYHOLE_QUERY_LOG_ENABLED=0: the same interface, keeping nothing."""

    mode = "off"
    workers = 0
    size = 0
    capacity = 0
    drops = 0
    written = 0
    write_errors = 0
    unwritten = 0
    write_rate = 0.0
    closed = False

    def start(self) -> DisabledQueryLogger:
        return self

    def log_async(self, entry: QueryLogEntry) -> bool:
        return False

    def stats(self) -> QueryLogStats:
        return QueryLogStats(
            mode=self.mode,
            workers=0,
            size=0,
            capacity=0,
            drops=0,
            written=0,
            write_errors=0,
            unwritten=0,
            write_rate=0.0,
            queue_depth=_Histogram(QUEUE_DEPTH_BUCKETS).snapshot(),
            batch_seconds=_Histogram(BATCH_SECONDS_BUCKETS).snapshot(),
        )

    def close(self, timeout: float = 30.0) -> CloseReport:
        return CloseReport(0, 0, 0)


QueryLoggerLike = QueryLogger | ThreadPerQueryLogger | DisabledQueryLogger


def query_logger_build(config: QueryLogConfig, engine_name: str = "", **kwargs) -> QueryLoggerLike:
    """The logger a config describes, not started. kwargs go to the logger (writer=, retry_*)."""
    if not config.enabled:
        return DisabledQueryLogger()
    cls = QueryLogger if config.mode == "pool" else ThreadPerQueryLogger
    return cls(
        config.buffer_size,
        config.workers,
        config.batch_size,
        config.flush_interval,
        engine_name,
        rollups=config.rollups,
        **kwargs,
    )


def query_logger_from_settings(engine_name: str = "") -> QueryLoggerLike:
    """The logger GLORYHOLE_QUERY_LOG_* describe, not started."""
    return query_logger_build(QueryLogConfig.from_settings(), engine_name)


@dataclass(slots=True)
class _Retired:
    written: int = 0
    unwritten: int = 0
    dropped: int = 0
    write_errors: int = 0
    queue_depth: HistogramSnapshot | None = None
    batch_seconds: HistogramSnapshot | None = None
    reports: list[CloseReport] = field(default_factory=list)


class SwappableQueryLogger:
    """The logger the engine holds: SIGHUP swaps what is behind it without losing entries.

    ``log_async`` is the current logger's own bound method, stored on this object and
    replaced on reconfigure, so the hot path pays no extra call. Call
    ``query_logger.log_async(entry)`` each time; a bound method cached before a swap
    still works (the old logger forwards to its successor) but costs a hop.
    """

    def __init__(self, logger: QueryLoggerLike, *, engine_name: str = "", config: QueryLogConfig | None = None) -> None:
        self._current = logger
        self.log_async: Callable[[QueryLogEntry], bool] = logger.log_async
        self.engine_name = engine_name
        self.config = config
        self._lock = threading.Lock()
        self._retired = _Retired()
        self._report: CloseReport | None = None
        self.generation = 0  # how many times reconfigured

    @classmethod
    def from_settings(cls, engine_name: str = "") -> SwappableQueryLogger:
        config = QueryLogConfig.from_settings()
        return cls(query_logger_build(config, engine_name), engine_name=engine_name, config=config)

    @property
    def current(self) -> QueryLoggerLike:
        return self._current

    def start(self) -> SwappableQueryLogger:
        self._current.start()
        return self

    def reconfigure(self, config: QueryLogConfig, timeout: float = 30.0, **kwargs) -> CloseReport:
        """Start a logger for ``config``, swap it in, then close (drain) the old one.

        Returns the old logger's close report. Entries the old one could not write in
        ``timeout`` (or that reached it after the swap) are handed to the new one.
        """
        with self._lock:
            if self._report is not None:
                raise RuntimeError("query logger is closed")
            new = query_logger_build(config, self.engine_name, **kwargs).start()
            old = self._current
            old._successor = new if not isinstance(new, DisabledQueryLogger) else None
            self._current = new
            self.log_async = new.log_async
            self.config = config
            self.generation += 1
            report = old.close(timeout)
            self._retire(old, report)
            log.info(
                "query log reconfigured: mode=%s workers=%d buffer=%d (previous logger wrote %d, dropped %d)",
                new.mode,
                new.workers,
                new.capacity,
                report.written,
                report.dropped,
            )
            return report

    def reconfigure_from_environ(self, timeout: float = 30.0) -> CloseReport | None:
        """SIGHUP: re-read GLORYHOLE_QUERY_LOG_* and swap if anything changed."""
        config = QueryLogConfig.from_environ()
        if config == self.config:
            return None
        return self.reconfigure(config, timeout)

    def _retire(self, old: QueryLoggerLike, report: CloseReport) -> None:
        stats = old.stats()
        r = self._retired
        r.written += report.written
        r.unwritten += report.unwritten
        r.dropped += report.dropped
        r.write_errors += stats.write_errors
        r.queue_depth = stats.queue_depth if r.queue_depth is None else r.queue_depth.merged(stats.queue_depth)
        r.batch_seconds = (
            stats.batch_seconds if r.batch_seconds is None else r.batch_seconds.merged(stats.batch_seconds)
        )
        r.reports.append(report)

    def close(self, timeout: float = 30.0) -> CloseReport:
        """Close the current logger; the report covers every logger this one has held."""
        with self._lock:
            if self._report is None:
                report = self._current.close(timeout)
                r = self._retired
                self._report = CloseReport(
                    written=r.written + report.written,
                    unwritten=r.unwritten + report.unwritten,
                    dropped=r.dropped + report.dropped,
                )
            return self._report

    def stats(self) -> QueryLogStats:
        s = self._current.stats()
        r = self._retired
        return replace(
            s,
            drops=s.drops + r.dropped,
            written=s.written + r.written,
            write_errors=s.write_errors + r.write_errors,
            unwritten=s.unwritten + r.unwritten,
            queue_depth=s.queue_depth if r.queue_depth is None else s.queue_depth.merged(r.queue_depth),
            batch_seconds=s.batch_seconds if r.batch_seconds is None else s.batch_seconds.merged(r.batch_seconds),
        )

    # The properties the heartbeat and tests read, cumulative over swaps.
    mode = property(lambda self: self._current.mode)
    workers = property(lambda self: self._current.workers)
    size = property(lambda self: self._current.size)
    capacity = property(lambda self: self._current.capacity)
    drops = property(lambda self: self._current.drops + self._retired.dropped)
    written = property(lambda self: self._current.written + self._retired.written)
    write_errors = property(lambda self: self._current.write_errors + self._retired.write_errors)
    unwritten = property(lambda self: self._current.unwritten + self._retired.unwritten)
    write_rate = property(lambda self: self._current.write_rate)
    wal_stats = property(lambda self: getattr(self._current, "wal_stats", WalStats()))  # the current logger's
