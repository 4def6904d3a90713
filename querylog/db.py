"""Database helpers for writing QueryLog rows and rollups fast.

Statement building (``execute_values``: multi-row INSERTs, on SQLite in reusable
pieces), ``execute_copy`` (PostgreSQL COPY), the process-wide SQLite write lock,
the conversions a row goes through on its way to the database (timestamps, client
addresses, integers, NUL bytes), and the row builder that turns query-log entries
into the tuples those statements take. Nothing here starts threads or keeps counters:
the query logger's writer (``querylog.logger.writer``), the rollups, retention and
the dashboard's selectors all build on it.
"""

from __future__ import annotations

import functools
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import chain

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections

from dnsengine.core.entry import QueryLogEntry
from querylog.models import QueryLog

log = logging.getLogger(__name__)

# QueryLog columns the fast insert writes, in this order. The row builder below
# spells the same order out by hand (a generic per-field loop costs a row more
# Python work); check_columns() refuses to start if the model and this tuple disagree.
COLUMNS: tuple[str, ...] = (
    "timestamp", "client", "protocol", "domain", "qtype", "rcode", "status", "rule", "upstream", "duration_us",
    "engine", "client_name", "client_group",
)  # fmt: skip
_MAX_INT = 2147483647  # PositiveIntegerField is a 32-bit integer on PostgreSQL
_PG_MAX_PARAMS = 65535  # bind parameters per statement in PostgreSQL's protocol
_flatten = chain.from_iterable


# ---------------------------------------------------------------------------------------
# Columns and conversions


def check_columns() -> None:
    names = {f.name for f in QueryLog._meta.concrete_fields if not f.primary_key}
    if names != set(COLUMNS):
        raise ImproperlyConfigured(
            f"QueryLog fields {sorted(names)} differ from querylog.db.COLUMNS {sorted(COLUMNS)}: "
            "update COLUMNS and the row builder together with the model"
        )


def querylog_max_length(name: str) -> int:
    return QueryLog._meta.get_field(name).max_length


def sqlite_utc_text() -> Callable[[float], str]:
    """float epoch -> exactly the text Django stores on SQLite for that aware datetime.

    Django stores ``str(naive UTC datetime)``; building that through
    ``datetime.fromtimestamp`` + ``str`` is most of a row's Python cost. The
    date-time part changes once a second, so it is cached; the microseconds are
    rounded as ``datetime.fromtimestamp`` rounds them (modf, then round-half-even),
    and a whole second has no fraction, as in ``str(datetime)``.
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
        fast = sqlite_utc_text()
        # Trust but verify: fall back to Django's own path if this Django stores
        # datetimes differently from what the fast path was written against.
        samples = (0.0, 1.5, 1700000000.0, 1700000000.000001, 1700000000.9999996, 1234567890.123456)
        if all(fast(ts) == generic(ts) for ts in samples):
            return fast
        log.warning("query log: SQLite datetime format changed; using the slower generic conversion")
    return generic


class IpCache(dict):
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


def clamp_int(value: int) -> int:
    """``value`` as an integer inside PositiveIntegerField's range on every backend."""
    value = int(value)
    return 0 if value < 0 else min(value, _MAX_INT)


def without_nul(text: str) -> str:
    """``text`` with each NUL written ``\\000``, as in a DNS name's presentation format."""
    return text.replace("\x00", "\\000")


# ---------------------------------------------------------------------------------------
# The SQLite write lock


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


class NoLock:
    """A context manager that locks nothing: stands in where a database needs no lock."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_LOCK = NoLock()


# ---------------------------------------------------------------------------------------
# Statements


# SQLite statements: a batch goes as pieces of SQLITE_CHUNK_ROWS rows (the default
# batch, so a full batch is one statement) and a rest cut into power-of-two row counts.
# sqlite3 keeps the last 128 prepared statements of a connection; a statement per
# distinct row count would make every batch a new one, compiled afresh and cached,
# and with batches of every size those cached multi-thousand-row statements fill
# SQLite's heap and churn malloc (`make soak` prints it, `make bench-statements`
# compares). This way a table has at most a dozen statements, each compiled once per
# connection. The pieces are large rather than small because each statement is one
# more GIL release and re-take for the DNS thread to wait through.
SQLITE_CHUNK_ROWS = 2000


def sqlite_chunk_sizes(n: int, most: int, reuse: bool = True) -> list[int]:
    """Row counts that add up to `n`: pieces of min(most, SQLITE_CHUNK_ROWS), then powers of two.

    ``reuse=False`` (for the benchmark's comparison): as few pieces as `most` allows,
    so a statement per distinct batch size.
    """
    if not reuse:
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
def sqlite_values_sql(head: str, width: int, rows: int, tail: str) -> str:
    """``{head} VALUES (?, ...), ...{tail}`` for `rows` rows of `width` values."""
    # The same str object each time: its hash is computed once, and sqlite3 finds its
    # cached statement without building a ~20 kB string per piece.
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}{tail}"


def execute_values(
    connection,
    head: str,
    width: int,
    rows: Sequence[Sequence],
    tail: str = "",
    *,
    reuse_sqlite_statements: bool = True,
) -> None:
    """Run ``{head} VALUES (...), (...), ...{tail}`` for ``rows`` in a few multi-row statements.

    A few statements per batch means a few trips into the database driver, so a
    few GIL releases and re-takes per batch instead of one per row. On SQLite the
    batch goes in reusable pieces (see SQLITE_CHUNK_ROWS; ``reuse_sqlite_statements``
    False cuts it by the variable limit alone) to the DB-API cursor with ``?``
    marks, skipping Django's per-execute ``%s`` -> ``?`` regex over a large
    statement; errors still come out as django.db exceptions
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
                for size in sqlite_chunk_sizes(len(rows), max(1, limit // width), reuse_sqlite_statements):
                    chunk = rows[i : i + size]
                    i += size
                    cursor.execute(sqlite_values_sql(head, width, size, tail), list(_flatten(chunk)))
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


# ---------------------------------------------------------------------------------------
# Rows


def row_builder(connection, engine_name: str) -> Callable[[Sequence[QueryLogEntry]], list[tuple]]:
    """entries -> the COLUMNS tuples of their rows, converted as Django would for ``connection``."""
    ts = timestamp_adapter(connection)
    ips = IpCache(connection)
    # CharFields: Django passes str through unchanged; cutting to max_length keeps
    # PostgreSQL (which enforces it, unlike SQLite) from rejecting a whole batch.
    lp, ld, lq, lr, ls, lru, lu, lcn, lcg = (
        querylog_max_length(n)
        for n in ("protocol", "domain", "qtype", "rcode", "status", "rule", "upstream", "client_name", "client_group")
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
                d if (d := e.duration_us).__class__ is int and 0 <= d <= max_int else clamp_int(d),
                engine,
                e.client_name[:lcn],
                e.client_group[:lcg],
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


def querylog_from_entry(entry: QueryLogEntry, engine_name: str = "") -> QueryLog:
    """The model instance for an entry, with the same cuts as the fast path."""
    return QueryLog(
        timestamp=datetime.fromtimestamp(entry.timestamp, UTC),
        client=entry.client,
        protocol=entry.protocol[: querylog_max_length("protocol")],
        domain=entry.domain[: querylog_max_length("domain")],
        qtype=entry.qtype[: querylog_max_length("qtype")],
        rcode=entry.rcode[: querylog_max_length("rcode")],
        status=entry.status[: querylog_max_length("status")],
        rule=entry.rule[: querylog_max_length("rule")],
        upstream=entry.upstream[: querylog_max_length("upstream")],
        duration_us=clamp_int(entry.duration_us),
        engine=engine_name[: querylog_max_length("engine")],
        client_name=entry.client_name[: querylog_max_length("client_name")],
        client_group=entry.client_group[: querylog_max_length("client_group")],
    )
