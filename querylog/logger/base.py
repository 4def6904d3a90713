"""What the pool and thread-per-query loggers share: counters, retries and giving up.

A subclass decides how entries reach ``_deliver`` (a queue and writer threads, or a
thread per entry); this base writes a batch through the writer, retries transient
database errors with backoff, settles every entry as written, unwritten or handed
to a successor logger, and keeps the counters ``stats()`` reads. On SQLite it also
owns the logger's ``WalKeeper`` (``querylog.sqlite_wal``).
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from django.db import InterfaceError, OperationalError, connections

from dnsengine.core.entry import QueryLogEntry
from dnsengine.core.throttle import RateLimitedLog
from querylog.db import sqlite_write_lock
from querylog.logger.counters import (
    BATCH_SECONDS_BUCKETS,
    QUEUE_DEPTH_BUCKETS,
    CloseReport,
    Histogram,
    QueryLogStats,
)
from querylog.logger.writer import BatchWriter, Pacer, QueryLogWriter, WriteAbandoned
from querylog.privacy import FilterResult, PrivacyState, privacy_filter
from querylog.sqlite_wal import WalKeeper, WalStats, is_disk_full

if TYPE_CHECKING:
    from querylog.logger.build import QueryLoggerLike

log = logging.getLogger(__name__)

_RATE_WINDOW = 10.0  # seconds of history behind write_rate

# Seconds close() waits, after abandoning, for writers to notice and settle their entries
# (longer than a writer's SQLite busy wait, querylog.logger.writer.WRITER_BUSY_TIMEOUT_MS).
ABANDON_GRACE = 2.0


def reset_connections() -> None:
    """Close this thread's database connections; the next query reconnects."""
    try:
        connections.close_all()
    except Exception:  # closing a broken connection can itself fail; it is gone either way
        log.debug("query log: error closing a connection", exc_info=True)


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
                cancel_safe(timeout=ABANDON_GRACE)
            else:
                raw.cancel()
    except Exception:  # the connection is closing or broken: nothing runs on it
        log.debug("query log: could not interrupt a write", exc_info=True)


class _Outcome(enum.Enum):
    WRITTEN = 1
    INVALID = 2  # the database refused the data itself: retrying will not help
    ABANDONED = 3  # close() ran out of time while the database kept failing


class QueryLoggerBase:
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
        privacy: PrivacyState | None = None,
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
        # What the policy keeps out of a batch is taken out by the writer thread, never
        # on the DNS path (level 3 aside: see SwappableQueryLogger.privacy_apply).
        self._privacy = privacy
        self._retry_max = retry_max
        self._stats_lock = threading.Lock()
        self._drops = 0
        self._written = 0
        self._write_errors = 0
        self._unwritten = 0
        self._inflight = 0  # entries taken off the queue and not yet settled
        self._depth = Histogram(QUEUE_DEPTH_BUCKETS)
        self._batch_seconds = Histogram(BATCH_SECONDS_BUCKETS)
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
            privacy = self._privacy
            if privacy is not None and privacy.policy.active:
                self._deliver_filtered(batch, depth, privacy, pacer)
                return
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

    def _deliver_filtered(self, batch: list[QueryLogEntry], depth: int, privacy: PrivacyState, pacer) -> None:
        """The privacy policy's rows and the per-minute totals of the rest, in one write.

        Entries kept out by the policy are counted as not logged once their totals are
        written; given up, the whole batch counts as unwritten (or goes to a successor).
        """
        result = privacy_filter(privacy.policy, batch)
        started = time.perf_counter()
        outcome = self._attempt(result.rows, pacer, result)
        if outcome is _Outcome.WRITTEN:
            self._record(len(result.rows), time.perf_counter() - started, depth)
            privacy.count(result.not_logged)
        elif outcome is _Outcome.ABANDONED:
            self._give_up(batch)
        else:
            self._deliver_one_by_one(result.rows, depth, result)
            minutes_only = FilterResult([], result.minutes, result.not_logged, result.domains, result.clients)
            if self._attempt([], None, minutes_only) is _Outcome.WRITTEN:
                privacy.count(result.not_logged)
            else:
                with self._stats_lock:
                    self._unwritten += sum(result.not_logged.values())

    def _deliver_one_by_one(self, batch: list[QueryLogEntry], depth: int, shape: FilterResult | None = None) -> None:
        # Something in the batch is invalid for the database (say, a NUL byte on
        # PostgreSQL): write the entries one at a time so one bad entry costs one row.
        if shape is not None:
            shape = FilterResult([], {}, {}, shape.domains, shape.clients)  # the rows' rollups only
        for i, entry in enumerate(batch):
            started = time.perf_counter()
            outcome = self._attempt([entry], None, shape)
            if outcome is _Outcome.WRITTEN:
                self._record(1, time.perf_counter() - started, depth)
            elif outcome is _Outcome.ABANDONED:
                self._give_up(batch[i:])
                return
            else:
                with self._stats_lock:
                    self._unwritten += 1
                self._error_log.log(logging.ERROR, "query log: rejected entry %r", entry)

    def _attempt(
        self, entries: list[QueryLogEntry], pacer: Pacer | None = None, shape: FilterResult | None = None
    ) -> _Outcome:
        delay = self._retry_initial
        attempt = 0
        using = getattr(self._writer, "using", None)
        # Only our writer writes in paced pieces and knows a privacy shape; any other
        # callable gets the rows.
        if isinstance(self._writer, QueryLogWriter):
            write = (
                functools.partial(self._writer, pacer=pacer, shape=shape)
                if shape
                else functools.partial(self._writer, pacer=pacer)
            )
        else:
            write = self._writer
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
                reset_connections()
                return _Outcome.INVALID
            finally:
                if using is not None:
                    with self._stats_lock:
                        self._writing.pop(threading.get_ident(), None)
            # The next attempt starts on a new connection: the old one may be dead
            # (PostgreSQL restart) or stuck in a failed transaction.
            reset_connections()
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
