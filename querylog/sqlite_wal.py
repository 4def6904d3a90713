"""Keeping SQLite's WAL file small: truncated after a disk-full error, after a backlog, and when idle.

SQLite's WAL grows up to the checkpoint interval (``wal_autocheckpoint``: 10,000 pages,
~40 MiB, set in gloryhole_site/env.py) and then stays that size: an automatic
checkpoint copies the pages back into the database and starts writing the WAL from its
beginning again, but never shortens the file. On a small volume that filled up, space
freed elsewhere is then taken again at once by the WAL. ``PRAGMA
wal_checkpoint(TRUNCATE)`` copies everything back and cuts the file to 0 bytes.

Who runs it and when (``WalKeeper``): a query-log writer thread, on its own connection,
under the process's SQLite write lock (``querylog.db.sqlite_write_lock``) and outside
any transaction; never the DNS thread. It runs

- right after a write failed because the disk (or ``max_page_count``) is full, at most
  once a second while the failures go on;
- when the queue has drained after failed writes or after a backlog of several batches
  (the writers are no longer catching up);
- when idle: nothing to write, at least ``IDLE_INTERVAL`` since the last attempt, and a
  WAL of at least ``IDLE_BYTES``. At a few queries a second the WAL would otherwise sit
  at ~40 MiB for good once it has grown there; under steady load the queue is never
  empty at the writer's turn, so this costs a busy engine nothing.

A TRUNCATE checkpoint waits (SQLite's busy handler) until no other connection writes and
no reader holds an older snapshot, and it holds the database's write lock while it waits,
so other writers (the web process, the heartbeat) would wait behind it. It therefore
waits at most ``BUSY_MS``; busy, it has still copied what it could, and it is tried again
``RETRY_AFTER`` later, at most ``TRIES`` times per reason. Nothing here imports the DNS
engine, and a failure here is logged and never reaches a writer's batch.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from dnsengine.core.throttle import RateLimitedLog

log = logging.getLogger(__name__)

BUSY_MS = 100  # how long one TRUNCATE checkpoint may wait for readers and writers
RETRY_AFTER = 5.0  # seconds before a busy checkpoint is tried again
TRIES = 5  # attempts per reason before giving up until the next one
DISK_FULL_SPACING = 1.0  # seconds between checkpoints while writes keep failing for space
IDLE_INTERVAL = 300.0  # seconds between idle checkpoints
IDLE_BYTES = 4 << 20  # a smaller WAL is left alone when idle

_DISK_FULL_TEXT = ("database or disk is full", "no space left on device")


def is_disk_full(exc: BaseException) -> bool:
    """Did this database error happen because the disk (or SQLite's page limit) is full?

    SQLite reports ENOSPC as SQLITE_FULL, as it does for a database at ``max_page_count``;
    Django's exception wraps sqlite3's, whose ``sqlite_errorcode`` says which (the low
    byte is the primary code). The text is the fallback for other drivers.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        if getattr(exc, "errno", None) == 28:  # ENOSPC
            return True
        text = str(exc).lower()
        if any(t in text for t in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def wal_size(using: str = DEFAULT_DB_ALIAS) -> int:
    """Bytes in the database's WAL file now (0 when there is none)."""
    try:
        return os.path.getsize(f"{connections[using].settings_dict['NAME']}-wal")
    except OSError:
        return 0


def wal_truncate(using: str = DEFAULT_DB_ALIAS, lock: threading.Lock | None = None, busy_ms: int = BUSY_MS) -> bool:
    """``PRAGMA wal_checkpoint(TRUNCATE)`` on this thread's connection; True when the WAL is now empty.

    False when readers or another writer kept it busy for ``busy_ms``, or it failed (a
    full disk can make the checkpoint itself fail: the WAL then stays as it was).
    """
    connection = connections[using]
    try:
        with lock or nullcontext(), connection.wrap_database_errors:
            connection.ensure_connection()
            raw = connection.connection
            if raw.in_transaction:  # never commit or cut into someone's transaction
                return False
            raw.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
            row = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except DatabaseError as exc:
        log.debug("query log: WAL checkpoint failed: %s", exc)
        return False
    return row is not None and row[0] == 0


@dataclass(slots=True)
class WalStats:
    truncations: int = 0  # checkpoints that emptied the WAL
    busy: int = 0  # attempts that readers, a writer or an error kept from finishing


class WalKeeper:
    """When a query logger's writer threads truncate the WAL (see the module's docstring).

    One per logger; its writer threads call ``disk_full()`` after such a failure,
    ``mark()`` after other failures and large backlogs, and ``tend()`` whenever they
    have less than a batch to write. All three are cheap when there is nothing to do;
    only one thread checkpoints at a time.
    """

    def __init__(self, using: str, lock: threading.Lock | None) -> None:
        self.using = using
        self._lock = lock
        self._state = threading.Lock()
        self._busy = threading.Lock()  # held while a checkpoint runs
        self._reason = ""  # why a checkpoint is due ("" none)
        self._tries = 0
        self._next_try = 0.0
        self._last_disk_full = -DISK_FULL_SPACING
        self._last_idle = time.monotonic()
        self.stats = WalStats()
        self._log = RateLimitedLog(log, 60.0)

    def mark(self, reason: str) -> None:
        """A checkpoint is due once the writers have drained the queue."""
        if self._reason == reason:
            return
        with self._state:
            self._reason = reason
            self._tries = TRIES
            self._next_try = 0.0

    def disk_full(self) -> None:
        """A write failed for lack of space: truncate now (spaced), and again after the backlog."""
        self.mark("after writes failed for lack of space")
        now = time.monotonic()
        if now - self._last_disk_full < DISK_FULL_SPACING:
            return
        self._last_disk_full = now
        self._run("a write failed for lack of space", due=False)

    def tend(self, idle: bool) -> None:
        """Called by a writer with less than a batch queued; ``idle``: nothing queued at all."""
        now = time.monotonic()
        if self._reason and now >= self._next_try:
            self._run(self._reason, due=True)
        elif idle and now - self._last_idle >= IDLE_INTERVAL:
            self._last_idle = now
            if wal_size(self.using) >= IDLE_BYTES:
                self._run("idle", due=False)

    def _run(self, reason: str, *, due: bool) -> None:
        if not self._busy.acquire(blocking=False):
            return  # another writer is checkpointing
        try:
            before = wal_size(self.using)
            done = wal_truncate(self.using, self._lock)
            now = time.monotonic()
            self._last_idle = now
            with self._state:
                if done:
                    self.stats.truncations += 1
                else:
                    self.stats.busy += 1
                if due and self._reason == reason:
                    self._tries -= 1
                    if done or self._tries <= 0:
                        self._reason = ""
                    else:
                        self._next_try = now + RETRY_AFTER
                gave_up = due and not done and not self._reason
        finally:
            self._busy.release()
        if done:
            if before:
                self._log.info("query log: WAL truncated from %.1f MiB (%s)", before / 2**20, reason)
        elif gave_up:
            self._log.warning(
                "query log: could not truncate the WAL (%.1f MiB) %s: readers or another writer kept it busy",
                before / 2**20,
                reason,
            )
