"""Log lines that could fire once per packet, at most once per interval."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """At most one line per `interval` seconds; the next line says how many were held back."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0
        self._lock = threading.Lock()

    def _log(self, level: int, msg: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self.interval
        if suppressed:
            msg = f"{msg} ({suppressed} similar messages suppressed)"
        self.logger.log(level, msg, *args)

    def warning(self, msg: str, *args) -> None:
        self._log(logging.WARNING, msg, *args)

    def info(self, msg: str, *args) -> None:
        self._log(logging.INFO, msg, *args)
