"""The engine's heartbeat: its EngineStatus row, upserted every ~2 s.

The web process (and operators of other engines on the same database) read that
row; they never talk to the engine's memory.

    heartbeat = Heartbeat(name, engine_stats, query_logger, generation=lambda: engine.generation,
                          rate_limited=lambda: limiter.limited_clients(clock()))
    heartbeat.start()
    ...
    heartbeat.stop()  # publishes once more, so the row shows the final counts
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from dnsengine.core.stats import EngineStats
from dnsengine.models import EngineStatus

log = logging.getLogger(__name__)

_UPDATE_FIELDS = [
    "hostname", "pid", "started_at", "heartbeat_at", "queries_total", "qps", "buffer_size", "buffer_capacity",
    "drops", "written", "write_errors", "write_rate", "workers", "mode", "generation", "threads", "rate_limited",
]  # fmt: skip

# The row holds at most this many rate-limited client IPs: under a spoofed-source
# flood the limiter may refuse many more, and the clients page only needs to mark
# the ones it shows. The list is sorted, so which ones are kept does not flicker.
RATE_LIMITED_MAX = 1000


@dataclass(slots=True)
class _Sample:
    at: float  # time.monotonic()
    queries: int
    written: int


# Previous call per engine name, for qps and write rate: a rate over the last
# interval says more about "now" than an average since start.
_previous: dict[str, _Sample] = {}
_previous_lock = threading.Lock()


def _as_datetime(value: datetime | float | None) -> datetime:
    if value is None:
        return timezone.now()
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)


def engine_status_publish(
    name: str,
    started_at: datetime | float | None,
    engine_stats: EngineStats | None,
    query_logger=None,
    generation: int = 0,
    threads: int | None = None,
    *,
    now: float | None = None,
    rate_limited: list[str] | None = None,
) -> EngineStatus:
    """Upsert this engine's EngineStatus row in one statement and return it.

    qps and write_rate are computed from the previous call for the same name (0 on
    the first). ``now`` (monotonic seconds) is for tests. ``rate_limited``: the client
    IPs the rate limiter refuses now (at most RATE_LIMITED_MAX are stored).
    """
    now = time.monotonic() if now is None else now
    queries = engine_stats.total() if engine_stats is not None else 0
    q = query_logger.stats() if query_logger is not None else None
    written = q.written if q is not None else 0
    with _previous_lock:
        prev = _previous.get(name)
        _previous[name] = _Sample(now, queries, written)
    qps = write_rate = 0.0
    if prev is not None and now > prev.at:
        span = now - prev.at
        qps = max(0, queries - prev.queries) / span
        write_rate = max(0, written - prev.written) / span
    row = EngineStatus(
        name=name,
        hostname=socket.gethostname()[:200],
        pid=os.getpid(),
        started_at=_as_datetime(started_at),
        heartbeat_at=timezone.now(),
        queries_total=queries,
        qps=round(qps, 2),
        buffer_size=q.size if q else 0,
        buffer_capacity=q.capacity if q else 0,
        drops=q.drops if q else 0,
        written=written,
        write_errors=q.write_errors if q else 0,
        write_rate=round(write_rate, 2),
        workers=q.workers if q else 0,
        mode=(q.mode if q else "off")[:20],
        generation=generation,
        threads=threading.active_count() if threads is None else threads,
        rate_limited=sorted(str(ip) for ip in rate_limited or ())[:RATE_LIMITED_MAX],
    )
    # bulk_create with update_conflicts is one INSERT ... ON CONFLICT (name) DO UPDATE:
    # no read-then-write race between two engines that share a name by mistake.
    EngineStatus.objects.bulk_create([row], update_conflicts=True, unique_fields=["name"], update_fields=_UPDATE_FIELDS)
    return row


class Heartbeat:
    """Calls engine_status_publish every ``interval`` seconds on its own thread.

    A database error is logged (at most once a minute) and the next beat tries
    again: the heartbeat must outlive a locked or restarting database.
    """

    def __init__(
        self,
        name: str,
        engine_stats: EngineStats | None,
        query_logger=None,
        *,
        started_at: datetime | float | None = None,
        interval: float | None = None,
        generation: Callable[[], int] | None = None,
        rate_limited: Callable[[], list[str]] | None = None,
    ) -> None:
        self.name = name
        self.engine_stats = engine_stats
        self.query_logger = query_logger
        self.started_at = _as_datetime(started_at if started_at is not None else getattr(engine_stats, "started", None))
        self.interval = interval if interval is not None else settings.GLORYHOLE_HEARTBEAT_INTERVAL
        self.generation = generation or (lambda: 0)
        # The rate limiter's limited_clients(now), bound by whoever wires the limiter in.
        self.rate_limited = rate_limited or list
        self.beats = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_error_log = 0.0

    def _limited(self) -> list[str]:
        # A failing limiter must not stop the heartbeat: the row then says nobody is limited.
        try:
            return list(self.rate_limited())
        except Exception:
            log.exception("heartbeat for %s: reading the rate-limited clients failed", self.name)
            return []

    def beat(self) -> bool:
        """Publish once; False (logged) if the database refused."""
        close_old_connections()
        try:
            engine_status_publish(
                self.name,
                self.started_at,
                self.engine_stats,
                self.query_logger,
                self.generation(),
                rate_limited=self._limited(),
            )
            self.beats += 1
            return True
        except Exception as exc:
            self.failures += 1
            now = time.monotonic()
            if now >= self._next_error_log:
                self._next_error_log = now + 60
                # One line: libpq's messages span two.
                reason = " ".join(str(exc).split())
                log.warning("heartbeat for %s failed (%d failures so far): %s", self.name, self.failures, reason)
            return False
        finally:
            close_old_connections()

    def _run(self) -> None:
        try:
            while True:
                self.beat()
                if self._stop.wait(self.interval):
                    return
        finally:
            connections.close_all()

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0, *, final_beat: bool = True) -> None:
        """Stop the thread; with final_beat, publish once more from the caller's thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if final_beat:
            self.beat()
