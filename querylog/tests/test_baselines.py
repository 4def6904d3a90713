"""querylog.logger.baselines: the thread-per-query logger (mode ``thread``)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from gloryhole_site.testing.querylog import RecordingWriter, make_entries
from querylog.logger.baselines import THREAD_MODE_MAX_CONNECTIONS, ThreadPerQueryLogger
from querylog.logger.counters import CloseReport
from querylog.models import QueryLog


def test_thread_mode_starts_a_thread_per_entry(loggers):
    writer = RecordingWriter(hold=True)
    logger = ThreadPerQueryLogger(1000, writer=writer)
    loggers.append(logger)
    before = threading.active_count()

    for e in make_entries(20):
        assert logger.log_async(e)

    assert threading.active_count() >= before + 20
    writer.release.set()
    assert logger.close(timeout=10) == CloseReport(written=20, unwritten=0, dropped=0)


@pytest.mark.django_db(transaction=True)
def test_thread_mode_writes_one_row_per_entry(loggers):
    logger = ThreadPerQueryLogger(1000, engine_name="naive")
    loggers.append(logger)
    for e in make_entries(30):
        assert logger.log_async(e)

    assert logger.close(timeout=20) == CloseReport(written=30, unwritten=0, dropped=0)
    assert QueryLog.objects.filter(engine="naive").count() == 30


class _ConcurrencyProbe:
    """A batch writer that holds every caller until released and counts how many are inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.changed = threading.Condition()
        self.release = threading.Event()

    def __call__(self, entries) -> None:
        with self.changed:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.changed.notify_all()
        self.release.wait(20)
        with self.changed:
            self.inside -= 1


def test_thread_mode_holds_at_most_ten_connections_on_a_database_server(loggers):
    probe = _ConcurrencyProbe()
    logger = ThreadPerQueryLogger(1000, writer=probe)
    loggers.append(logger)
    for e in make_entries(30):
        assert logger.log_async(e)
    # SQLite: the real writer's sqlite_write_lock serialises the writes instead.
    expected = 30 if connection.vendor == "sqlite" else THREAD_MODE_MAX_CONNECTIONS
    with probe.changed:
        assert probe.changed.wait_for(lambda: probe.inside == expected, timeout=10)
        probe.changed.wait(0.3)  # room for one thread too many to show up
    probe.release.set()

    assert logger.close(timeout=20) == CloseReport(written=30, unwritten=0, dropped=0)
    assert probe.most == expected
