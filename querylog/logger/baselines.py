"""The two loggers that are not the pool: ``ThreadPerQueryLogger`` and ``DisabledQueryLogger``.

``ThreadPerQueryLogger`` (GLORYHOLE_QUERY_LOG_MODE=thread) is the naive design, one
thread and one insert per query, which the benchmarks and the load test compare the
pool against. ``DisabledQueryLogger`` (GLORYHOLE_QUERY_LOG_ENABLED=0) has the same
interface and keeps nothing.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DEFAULT_DB_ALIAS, connections

from dnsengine.core.entry import QueryLogEntry
from querylog.db import NO_LOCK
from querylog.logger.base import ABANDON_GRACE, QueryLoggerBase
from querylog.logger.counters import (
    BATCH_SECONDS_BUCKETS,
    QUEUE_DEPTH_BUCKETS,
    CloseReport,
    Histogram,
    QueryLogStats,
)
from querylog.logger.writer import BatchWriter
from querylog.privacy import PrivacyState

log = logging.getLogger(__name__)

# Thread mode on a database server: threads holding a connection at once.
THREAD_MODE_MAX_CONNECTIONS = 10


class ThreadPerQueryLogger(QueryLoggerBase):
    """The naive baseline: one new thread per entry, each inserting one row.

    GLORYHOLE_QUERY_LOG_MODE=thread, and the benchmarks' comparison. Each thread opens
    its own database connection, which is most of its cost. ``buffer_size`` caps the
    threads in flight so an overload is counted drops instead of an unbounded pile of
    threads.
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
        privacy: PrivacyState | None = None,
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
            privacy=privacy,
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
            else NO_LOCK
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
                    self._idle.wait_for(lambda: self._threads_in_flight == 0, ABANDON_GRACE)
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
            queue_depth=Histogram(QUEUE_DEPTH_BUCKETS).snapshot(),
            batch_seconds=Histogram(BATCH_SECONDS_BUCKETS).snapshot(),
        )

    def close(self, timeout: float = 30.0) -> CloseReport:
        return CloseReport(0, 0, 0)
