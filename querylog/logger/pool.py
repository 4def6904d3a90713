"""``QueryLogger``: the bounded queue the DNS path appends to, drained by a pool of writer threads.

Flow: ``log_async(entry)`` appends to a bounded in-process queue (a full queue is a
counted drop), a fixed pool of writer threads takes up to a batch at a time and
writes it in one transaction (rows plus the dashboard rollups), retrying a failed
write with backoff and keeping the batch. A writer catching up on a backlog rests
between pieces of work (``CATCHUP_PAUSE_RATIO``); on SQLite the writers also keep the
WAL file small (``querylog.sqlite_wal``). ``close()`` stops intake, writes what was
queued and says how many entries were written, could not be written, and dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from django.db import connections

from dnsengine.core.entry import QueryLogEntry
from querylog.logger.base import ABANDON_GRACE, QueryLoggerBase, reset_connections
from querylog.logger.counters import CloseReport
from querylog.logger.writer import CATCHUP_PAUSE_RATIO, BatchWriter, Pacer
from querylog.privacy import PrivacyState

log = logging.getLogger(__name__)

# A writer thread keeps its connection across batches rather than calling
# close_old_connections() per batch: with CONN_MAX_AGE=0 that reconnects (and reruns
# the PRAGMAs) every batch, and closing the last connection to a WAL database
# checkpoints and deletes the WAL. The connection is dropped after any failed write
# and renewed after this long.
_CONNECTION_MAX_AGE = 300.0

# A queue this many batches deep is a backlog: once drained, the WAL it grew is truncated.
_WAL_BACKLOG_BATCHES = 5


class QueryLogger(QueryLoggerBase):
    """Bounded queue drained by a fixed pool of writer threads.

    ``log_async`` is the DNS hot path: a deque length check and an append (``make
    bench`` times it); no lock, no condition variable. Writers are woken when a batch
    is ready (one Event.set per batch, not per entry) and otherwise poll every
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
        privacy: PrivacyState | None = None,
    ) -> None:
        super().__init__(
            buffer_size,
            writer=writer,
            engine_name=engine_name,
            rollups=rollups,
            retry_initial=retry_initial,
            retry_max=retry_max,
            privacy=privacy,
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
                        reset_connections()
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
                    thread.join(ABANDON_GRACE)
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
