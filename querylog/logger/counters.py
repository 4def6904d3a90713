"""What the query logger counts: its stats snapshot, histograms, and the close report.

Plain values, no database: /metrics and the heartbeat read a ``QueryLogStats``;
``close()`` returns a ``CloseReport`` of written, unwritten and dropped entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Histogram upper bounds (the +Inf bucket is implicit).
QUEUE_DEPTH_BUCKETS: tuple[float, ...] = (0, 1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 500000)
BATCH_SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass(slots=True, frozen=True)
class CloseReport:
    written: int
    unwritten: int
    dropped: int
    not_logged: int = 0  # kept out by the privacy policy (querylog.privacy); not drops


@dataclass(slots=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    counts: list[int]  # one per bound, +Inf last; not cumulative
    total: float  # sum of observed values

    def merged(self, other: HistogramSnapshot) -> HistogramSnapshot:
        if other.bounds != self.bounds:
            return self
        return HistogramSnapshot(
            self.bounds, [a + b for a, b in zip(self.counts, other.counts, strict=True)], self.total + other.total
        )


@dataclass(slots=True)
class QueryLogStats:
    """A consistent read of the logger's counters for /metrics and the heartbeat."""

    mode: str
    workers: int
    size: int  # entries queued (pool) or threads in flight (thread mode)
    capacity: int
    drops: int
    written: int
    write_errors: int  # failed write attempts (each retry counts)
    unwritten: int  # accepted but given up on
    write_rate: float  # rows/s over the last few seconds
    queue_depth: HistogramSnapshot
    batch_seconds: HistogramSnapshot
    not_logged: dict[str, int] = field(default_factory=dict)  # reason -> entries kept out by policy


class Histogram:
    """Bucket counts kept by the writers (one update per batch, under the stats lock)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, list(self.counts), self.total)
