"""A writer catching up on a backlog leaves the DNS thread its share of CPU and GIL."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import connection

from gloryhole_site.testing.querylog import make_entries
from querylog.logger.counters import CloseReport
from querylog.logger.pool import QueryLogger
from querylog.models import QueryLog


class TimedWriter:
    """A batch writer that works ``seconds`` per batch (sleeping) and records when each call ran."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[tuple[float, float]] = []

    def __call__(self, entries) -> None:
        started = time.perf_counter()
        time.sleep(self.seconds)
        self.calls.append((started, time.perf_counter()))

    def busy_and_idle(self) -> tuple[float, float]:
        busy = sum(end - start for start, end in self.calls)
        idle = sum(b[0] - a[1] for a, b in zip(self.calls, self.calls[1:], strict=False))
        return busy, idle


def test_a_writer_catching_up_rests_between_batches():
    writer = TimedWriter(0.01)
    logger = QueryLogger(100_000, 1, 100, 0.02, writer=writer)
    for e in make_entries(3000):  # 30 batches waiting before the writer starts
        logger.log_async(e)
    logger.start()
    try:
        deadline = time.monotonic() + 20
        while logger.size and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        report = logger.close(timeout=10)

    busy, idle = writer.busy_and_idle()
    assert report == CloseReport(written=3000, unwritten=0, dropped=0)
    assert idle >= 0.5 * busy, f"rested {idle:.3f} s in {busy:.3f} s of writing"


def test_a_writer_does_not_rest_when_resting_would_let_the_backlog_grow():
    # Each batch of 100 takes 5 ms, during which 80 new entries arrive: writing at full
    # speed drains 20 a batch, writing half the time would not drain at all.
    class Busy(TimedWriter):
        logger: QueryLogger
        fed = 0

        def __call__(self, entries) -> None:
            if self.fed < 120:
                self.fed += 1
                for e in make_entries(80, start=100_000 + self.fed * 80):
                    self.logger.log_async(e)
            super().__call__(entries)

    writer = Busy(0.005)
    logger = writer.logger = QueryLogger(100_000, 1, 100, 0.02, writer=writer)
    for e in make_entries(3000):
        logger.log_async(e)
    logger.start()
    try:
        deadline = time.monotonic() + 20
        while (writer.fed < 120 or logger.size) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        report = logger.close(timeout=10)

    busy, idle = writer.busy_and_idle()
    assert report == CloseReport(written=3000 + 120 * 80, unwritten=0, dropped=0)
    assert idle < 0.3 * busy, f"rested {idle:.3f} s in {busy:.3f} s of writing"


def test_close_drains_a_backlog_without_resting():
    # At close the listeners are stopped and close() has a deadline: no DNS thread to yield to.
    writer = TimedWriter(0.01)
    logger = QueryLogger(100_000, 1, 100, 0.02, writer=writer)
    for e in make_entries(3000):
        logger.log_async(e)

    report = logger.close(timeout=20)

    busy, idle = writer.busy_and_idle()
    assert report == CloseReport(written=3000, unwritten=0, dropped=0)
    assert idle < 0.3 * busy, f"rested {idle:.3f} s in {busy:.3f} s of writing"


def _thread_cpu(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class StallProbe:
    """A thread doing small pure-Python work every millisecond; keeps its longest stall."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.measuring = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        x = 0
        while not self._stop.is_set():
            before = time.perf_counter()
            time.sleep(0.001)  # releases the GIL, as the DNS thread does in epoll and sendto
            for i in range(200):
                x += i
            stall = time.perf_counter() - before - 0.001
            if self.measuring.is_set():
                self.worst = max(self.worst, stall)

    def __enter__(self) -> StallProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.integration
@pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite writer's pieces; the pacing is tested above")
@pytest.mark.skipif(not hasattr(time, "pthread_getcpuclockid"), reason="needs per-thread CPU clocks")
@pytest.mark.django_db(transaction=True)
def test_catching_up_after_a_lock_leaves_the_dns_thread_cpu(monkeypatch):
    # The database is locked while 60,000 entries queue up, then released: the writer
    # writes the backlog. Without rests it took a whole CPU for as long as that lasts
    # (SQLite's work, with the GIL released, still takes a CPU from the DNS thread and
    # dnsperf on a 2-core machine). It must now use well under one; the probe checks
    # that a DNS-like thread is never held up for long meanwhile.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.05)
    logger = QueryLogger(100_000, 1, 2000, 0.05, "catch-up", retry_initial=0.02, retry_max=0.1)
    locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        logger.start()
        for e in make_entries(60_000):
            assert logger.log_async(e)
        deadline = time.monotonic() + 10
        while logger.write_errors < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert logger.write_errors >= 2
    finally:
        locker.execute("COMMIT")
        locker.close()
    with StallProbe() as probe:
        writer = logger._threads[0]
        cpu_before, wall_before = _thread_cpu(writer), time.perf_counter()
        probe.measuring.set()
        deadline = time.monotonic() + 60
        while logger.size >= 2000 and time.monotonic() < deadline:
            time.sleep(0.005)
        probe.measuring.clear()
        cpu, wall = _thread_cpu(writer) - cpu_before, time.perf_counter() - wall_before
    report = logger.close(timeout=30)

    assert report == CloseReport(written=60_000, unwritten=0, dropped=0)
    assert QueryLog.objects.count() == 60_000
    assert cpu / wall < 0.75, f"the writer used {cpu:.2f} s of CPU in {wall:.2f} s of catching up"
    assert probe.worst < 0.5, f"a DNS-like thread stalled for {probe.worst * 1000:.0f} ms"
