"""Log lines that could fire once per packet, query or retry: at most one per interval."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """At most one line per `interval` seconds; the next line says how many were held back.

    Never waits: a caller that finds another thread logging counts its line as
    suppressed, so a DNS or writer thread cannot block on a slow log handler.
    """

    __slots__ = ("_lock", "_next", "_suppressed", "interval", "logger")

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False, now: float | None = None) -> None:
        """`now`: the caller's monotonic clock reading, when it has one (a test's clock, say)."""
        if now is None:
            now = time.monotonic()
        if now < self._next or not self._lock.acquire(blocking=False):
            self._suppressed += 1
            return
        try:
            if now < self._next:
                self._suppressed += 1
                return
            self._next = now + self.interval
            suppressed, self._suppressed = self._suppressed, 0
            if suppressed:
                msg += " (%d similar lines suppressed)"
                args = (*args, suppressed)
            self.logger.log(level, msg, *args, exc_info=exc_info)
        finally:
            self._lock.release()

    def warning(self, msg: str, *args: object, now: float | None = None) -> None:
        self.log(logging.WARNING, msg, *args, now=now)

    def info(self, msg: str, *args: object) -> None:
        self.log(logging.INFO, msg, *args)
