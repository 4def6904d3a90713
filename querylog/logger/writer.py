"""Writing one batch: ``QueryLogWriter`` (rows plus rollups in one transaction) and ``Pacer``.

The writer is what the logger's threads call with each batch; it knows the
database and nothing of queues or threads. ``Pacer`` rests a writer thread
between pieces of work while it catches up on a backlog.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from dnsengine.core.entry import QueryLogEntry
from querylog.db import (
    COLUMNS,
    NO_LOCK,
    check_columns,
    execute_copy,
    execute_values,
    querylog_from_entry,
    querylog_max_length,
    row_builder,
    sqlite_write_lock,
)
from querylog.models import QueryLog
from querylog.privacy import FilterResult, merge_minutes
from querylog.rollups import rollup_rows, rollup_write


class BatchWriter(Protocol):
    def __call__(self, entries: Sequence[QueryLogEntry]) -> None: ...


class WriteAbandoned(Exception):
    """The logger gave up on its writes (close() ran out of time) before this one began."""


WRITE_METHODS = ("values", "executemany", "bulk_create", "copy")


def default_write_method(vendor: str) -> str:
    """The write method a backend gets unless one is asked for (figures: docs/scale-out.md)."""
    # PostgreSQL: COPY streams the rows with no statement to parse or plan per batch
    # and no bind-parameter limit. SQLite has no COPY.
    return "copy" if vendor == "postgresql" else "values"


WRITER_BUSY_TIMEOUT_MS = 1000


# Catching up (a backlog after the database was locked or down): a writer that finds a
# full batch still queued after taking one rests between pieces of work, as long as the
# piece took times CATCHUP_PAUSE_RATIO (1.0: writing at most half the time), so the DNS
# thread keeps its share of the CPU and the GIL. Only while that still drains the
# backlog (QueryLogger._run); a full batch at steady load is written at full speed.
# Measured: docs/querylog.md, "Catch-up after a database lock". 0 turns pacing off.
CATCHUP_PAUSE_RATIO = 1.0
CATCHUP_PIECE_ROWS = 512  # rows per INSERT while catching up: a power of two, see querylog.db.sqlite_chunk_sizes
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


class QueryLogWriter:
    """Writes a batch of entries as QueryLog rows (and rollups) in one transaction.

    The method defaults per backend (``default_write_method``): ``"copy"`` on
    PostgreSQL, ``"values"`` elsewhere. ``"copy"`` streams the batch's row tuples
    with ``COPY ... FROM STDIN`` (psycopg 3; PostgreSQL only). ``"values"`` builds
    the same row tuples and runs one multi-row
    ``INSERT ... VALUES (...), (...)`` per batch, generated from the model's fields,
    with values converted as Django converts them for the backend (see
    ``querylog.db.execute_values``). ``"executemany"`` runs one prepared single-row
    INSERT per row: about as fast when the writer has the process to itself, but the
    sqlite3 module releases and re-takes the GIL around every row, and with busy
    listener threads each re-take waits (``make bench`` compares the methods).
    ``"bulk_create"`` is the plain ORM path, kept for comparison: on SQLite it
    splits a batch into INSERTs of at most 999 parameters and prepares every value
    with several Python calls (docs/querylog.md, "Benchmark").

    ``reuse_sqlite_statements=False`` writes each SQLite batch as few statements as
    the variable limit allows, so a statement per distinct batch size instead of a
    dozen reused ones (see ``querylog.db.SQLITE_CHUNK_ROWS``): only for the
    benchmark that compares the two (``make bench-statements``).
    """

    def __init__(
        self,
        engine_name: str = "",
        *,
        rollups: bool = True,
        method: str | None = None,
        using: str = DEFAULT_DB_ALIAS,
        abandon: threading.Event | None = None,
        reuse_sqlite_statements: bool = True,
    ) -> None:
        vendor = connections[using].vendor
        method = method or default_write_method(vendor)
        if method not in WRITE_METHODS:
            raise ValueError(f"unknown write method {method!r}")
        if method == "copy" and vendor != "postgresql":
            raise ValueError(f"write method 'copy' needs PostgreSQL, not {vendor}")
        check_columns()
        self.engine_name = engine_name[: querylog_max_length("engine")]
        self.rollups = rollups
        self.method = method
        self.using = using
        self.reuse_sqlite_statements = reuse_sqlite_statements
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

    def __call__(
        self, entries: Sequence[QueryLogEntry], pacer: Pacer | None = None, shape: FilterResult | None = None
    ) -> None:
        """Write ``entries``; with a ``pacer`` (the logger is catching up), in pieces with rests between.

        ``shape``: the privacy filter's verdict on the batch ``entries`` came from: which
        rollups the rows may feed, and the per-minute totals of the entries not stored.
        """
        if shape is None:
            rollups = rollup_rows(entries) if self.rollups else None
        elif self.rollups:
            rollups = rollup_rows(entries, with_domains=shape.domains, with_clients=shape.clients)
            merge_minutes(rollups.minutes, shape.minutes.items())
        else:
            rollups = None
        if not entries:
            if rollups is not None and rollups.minutes:
                with self._write_transaction():
                    self._write_rollups(rollups)
            return
        if self.method == "bulk_create":
            objs = [querylog_from_entry(e, self.engine_name) for e in entries]
            with self._write_transaction():
                QueryLog.objects.using(self.using).bulk_create(objs)
                if rollups is not None:
                    self._write_rollups(rollups)
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
                execute_values(
                    connection, head, len(COLUMNS), rows, reuse_sqlite_statements=self.reuse_sqlite_statements
                )
            else:
                with connection.cursor() as cursor:
                    cursor.executemany(f"{head} VALUES ({', '.join(['%s'] * len(COLUMNS))})", rows)
            if rollups is not None:
                self._write_rollups(rollups)

    def _write_rollups(self, rollups) -> None:
        rollup_write(rollups, using=self.using, reuse_sqlite_statements=self.reuse_sqlite_statements)

    def _write_in_pieces(self, connection, head: str, build, entries, rollups, pacer: Pacer) -> None:
        # Catching up: rows are built and inserted CATCHUP_PIECE_ROWS at a time, with a
        # rest after each piece, so the DNS thread never waits behind more than one
        # piece's work (CPU, and the GIL while rows are built and bound). One
        # transaction still: per-batch costs (commit, rollup upserts) stay per batch.
        with self._write_transaction():
            for i in range(0, len(entries), CATCHUP_PIECE_ROWS):
                if i:
                    self._rest(pacer)
                execute_values(
                    connection,
                    head,
                    len(COLUMNS),
                    build(entries[i : i + CATCHUP_PIECE_ROWS]),
                    reuse_sqlite_statements=self.reuse_sqlite_statements,
                )
            if rollups is not None:
                self._rest(pacer)
                self._write_rollups(rollups)

    def _rest(self, pacer: Pacer) -> None:
        # Inside the transaction: a close() that ran out of time meanwhile must not see
        # this write land after it counted the batch as unwritten (its interrupt only
        # reaches a statement that is running).
        if pacer.rest(self._abandon):
            raise WriteAbandoned

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """The write lock (SQLite), the go-ahead check, then one transaction."""
        with self._lock if self._lock is not None else NO_LOCK:
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
            self._prepared = (f"INSERT INTO {table} ({columns})", row_builder(connection, self.engine_name))
        return self._prepared
