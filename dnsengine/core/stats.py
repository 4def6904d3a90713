"""Counters the DNS path keeps for itself, read by the heartbeat and /metrics.

Plain integers bumped under the GIL, not prometheus_client objects: those take
a lock per update, which the hot path should not pay. A Prometheus collector
turns a snapshot of these into metrics at scrape time.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

# Upper bounds of the query-duration histogram, in microseconds.
DURATION_BUCKETS_US: tuple[int, ...] = (
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
)  # fmt: skip


@dataclass(slots=True)
class EngineStatsSnapshot:
    queries_by_status: dict[str, int]
    duration_bucket_counts: list[int]  # cumulative-ready: one count per bucket, plus +Inf last
    duration_sum_us: int
    counters: dict[str, int]  # dropped packets, overflows, upstream failures ...


@dataclass(slots=True)
class EngineStats:
    queries_by_status: dict[str, int] = field(default_factory=dict)
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_US) + 1))
    duration_sum_us: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # Gauges read at scrape time, name -> reader (the rate-limit table's size, say): values that
    # belong to another object and would go stale if copied here.
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: str, duration_us: int) -> None:
        # One uncontended lock per answered query keeps the counts exact with
        # several listener threads.
        with self._lock:
            q = self.queries_by_status
            q[status] = q.get(status, 0) + 1
            self.duration_counts[bisect_left(DURATION_BUCKETS_US, duration_us)] += 1
            self.duration_sum_us += duration_us

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def total(self) -> int:
        return sum(self.queries_by_status.values())

    def snapshot(self) -> EngineStatsSnapshot:
        with self._lock:
            return EngineStatsSnapshot(
                dict(self.queries_by_status), list(self.duration_counts), self.duration_sum_us, dict(self.counters)
            )
