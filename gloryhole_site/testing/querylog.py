"""Query-log entries, stand-in batch writers, and a stand-in query logger that records what the engine logs."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from django.db import OperationalError

from dnsengine.core.entry import QueryLogEntry
from querylog.logger.pool import QueryLogger

STATUSES = ("forwarded", "blocked", "cached", "local", "allowed", "error")


def make_entry(i: int = 0, *, at: float | None = None, **fields) -> QueryLogEntry:
    values = {
        "timestamp": (time.time() if at is None else at) + i * 1e-3,
        "client": f"192.0.2.{i % 200 + 1}",
        "protocol": "udp" if i % 5 else "tcp",
        "domain": f"host{i % 97}.example.com",
        "qtype": "A" if i % 3 else "AAAA",
        "rcode": "NOERROR",
        "status": STATUSES[i % len(STATUSES)],
        "rule": "list:ads" if i % len(STATUSES) == 1 else "",
        "upstream": "192.0.2.53:53" if i % len(STATUSES) == 0 else "",
        "duration_us": 100 + i,
    }
    values.update(fields)
    return QueryLogEntry(**values)


def make_entries(n: int, *, start: int = 0, at: float | None = None) -> list[QueryLogEntry]:
    at = time.time() if at is None else at
    return [make_entry(i, at=at) for i in range(start, start + n)]


class RecordingWriter:
    """A batch writer that keeps entries in memory; can hold writers back or fail on demand."""

    def __init__(self, *, hold: bool = False, fail_times: int = 0, inner=None) -> None:
        self.entered = threading.Event()  # set when a writer has taken a batch
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.fail_times = fail_times
        self.calls = 0
        self.failed = threading.Event()  # set after the first injected failure
        self.inner = inner
        self.written: list[QueryLogEntry] = []
        self._lock = threading.Lock()

    def __call__(self, entries: Sequence[QueryLogEntry]) -> None:
        self.entered.set()
        assert self.release.wait(20), "test never released the writer"
        with self._lock:
            self.calls += 1
            if self.fail_times > 0:
                self.fail_times -= 1
                self.failed.set()
                raise OperationalError("database is locked")
        if self.inner is not None:
            self.inner(entries)
        with self._lock:
            self.written.extend(entries)


class SignallingWriter:
    """Wraps a real writer and sets ``failed`` once it has seen ``after`` OperationalErrors."""

    def __init__(self, inner, *, after: int = 1) -> None:
        self.inner = inner
        self.after = after
        self.errors = 0
        self.failed = threading.Event()

    def __call__(self, entries: Sequence[QueryLogEntry]) -> None:
        try:
            self.inner(entries)
        except OperationalError:
            self.errors += 1
            if self.errors >= self.after:
                self.failed.set()
            raise


class RecordingSink:
    """A query logger that keeps every entry and lets a test wait for them.

    The engine hands an entry over just after it sends the reply, so a test that
    has its answer may not see the entry yet: wait_for() and last_for() wait.
    """

    def __init__(self) -> None:
        self.entries = []
        self._changed = threading.Condition()

    def log_async(self, entry) -> bool:
        with self._changed:
            self.entries.append(entry)
            self._changed.notify_all()
        return True

    def wait_for(self, count: int, timeout: float = 5.0) -> list:
        """The entries, once there are at least `count` of them."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.entries) >= count, timeout), f"fewer than {count} entries"
            return list(self.entries)

    def last_for(self, domain: str, timeout: float = 5.0):
        """The newest entry for `domain`, waiting for one to come."""

        def find():
            return next((e for e in reversed(self.entries) if e.domain == domain), None)

        with self._changed:
            assert self._changed.wait_for(find, timeout), f"no log entry for {domain}"
            return find()


def pool(loggers, *, buffer=1000, workers=1, batch=100, flush=0.02, mode="pool", **kwargs) -> QueryLogger:
    """A pool-mode logger with small test bounds, closed by the `loggers` fixture.

    ``mode="process"``: the same queue written by child processes (no ``writer=`` then:
    a child writes to the database the test uses).
    """
    if mode == "process":
        from querylog.logger.process import ProcessQueryLogger

        logger = ProcessQueryLogger(buffer, workers, batch, flush, **kwargs)
    else:
        logger = QueryLogger(buffer, workers, batch, flush, **kwargs)
    loggers.append(logger)
    return logger


def wait_for(condition, timeout: float = 10.0, interval: float = 0.01):
    """Poll ``condition()`` until it is truthy (and return it); AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {condition}")
        time.sleep(interval)
