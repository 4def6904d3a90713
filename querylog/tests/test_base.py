"""querylog.logger.base: retries, giving up, and close()'s exact report, through both loggers."""

from __future__ import annotations

import contextlib
import sqlite3
import time

import pytest
from django.db import connection

from gloryhole_site.testing.querylog import (
    RecordingWriter,
    SignallingWriter,
    make_entries,
    make_entry,
    pool,
    wait_for,
)
from querylog.logger.baselines import ThreadPerQueryLogger
from querylog.logger.counters import CloseReport
from querylog.logger.writer import QueryLogWriter
from querylog.models import QueryLog


def test_it_keeps_the_batch_and_retries_after_an_operational_error(loggers):
    writer = RecordingWriter(fail_times=3)
    logger = pool(loggers, batch=10, writer=writer, retry_initial=0.001, retry_max=0.01).start()
    entries = make_entries(10)
    for e in entries:
        logger.log_async(e)

    report = logger.close(timeout=10)

    assert report == CloseReport(written=10, unwritten=0, dropped=0)
    assert logger.write_errors == 3
    assert writer.written == entries


def test_a_writer_survives_an_invalid_entry_and_writes_the_rest(loggers):
    class Rejecting(RecordingWriter):
        def __call__(self, entries):
            if any(e.domain == "bad.example" for e in entries):
                raise ValueError("bad entry")
            super().__call__(entries)

    writer = Rejecting()
    logger = pool(loggers, batch=20, writer=writer).start()
    entries = make_entries(20)
    entries[7] = make_entry(7, domain="bad.example")
    for e in entries:
        logger.log_async(e)
    logger.log_async(make_entry(99))  # after the bad batch: the writer must still be alive

    report = logger.close(timeout=10)

    assert report == CloseReport(written=20, unwritten=1, dropped=0)
    assert len(writer.written) == 20
    assert all(e.domain != "bad.example" for e in writer.written)


def test_close_reports_unwritten_entries_when_the_database_stays_down(loggers):
    writer = RecordingWriter(fail_times=10**9)
    logger = pool(loggers, batch=10, writer=writer, retry_initial=0.01, retry_max=0.05).start()
    for e in make_entries(25):
        logger.log_async(e)
    assert writer.failed.wait(5)

    started = time.monotonic()
    report = logger.close(timeout=0.3)

    assert time.monotonic() - started < 2
    assert report == CloseReport(written=0, unwritten=25, dropped=0)


SQLITE_ONLY = "SQLite-only: the PostgreSQL run has its own test for this, next to this one"
POSTGRES_ONLY = "PostgreSQL-only: the SQLite run has its own test for this, next to this one"


@pytest.mark.integration
@pytest.mark.skipif(connection.vendor != "sqlite", reason=SQLITE_ONLY)
@pytest.mark.django_db(transaction=True)
def test_it_retries_while_the_database_is_locked_and_writes_everything_after(loggers, monkeypatch):
    # Writers connect with a 0.1 s busy timeout so the lock surfaces as errors and
    # retries instead of one long wait inside SQLite.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.1)
    locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    locked_at = time.monotonic()
    writer = SignallingWriter(QueryLogWriter("test"), after=3)
    logger = pool(loggers, batch=100, writer=writer, retry_initial=0.05, retry_max=0.2).start()
    try:
        for e in make_entries(500):
            assert logger.log_async(e)
        assert writer.failed.wait(10)
        # Hold the lock for a couple of seconds in all, as a long web-side write would.
        time.sleep(max(0.0, 2.0 - (time.monotonic() - locked_at)))
    finally:
        locker.execute("COMMIT")
        locker.close()

    report = logger.close(timeout=20)

    assert report == CloseReport(written=500, unwritten=0, dropped=0)
    assert logger.write_errors >= 3
    assert QueryLog.objects.count() == 500


@contextlib.contextmanager
def database_locked():
    """Another connection holds the query-log table locked until the block ends."""
    if connection.vendor == "sqlite":
        locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
    else:  # PostgreSQL: writers wait on the lock inside the server, for ever
        locker = connection.get_new_connection(connection.get_connection_params())
        locker.execute("LOCK TABLE querylog_querylog IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        locker.rollback()
        locker.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["pool", "process", "thread"])
def test_close_out_of_time_reports_exactly_what_was_written(loggers, mode):
    # The database stays locked past close()'s timeout: every accepted entry is then
    # counted as unwritten, and none of them may land after close() has said so (a
    # writer waiting for the lock must not write once it is released; on PostgreSQL
    # the waiting statements are cancelled).
    with database_locked():
        if mode != "thread":
            logger = pool(loggers, batch=10, retry_initial=0.05, retry_max=0.2, mode=mode).start()
            if mode == "process":
                wait_for(lambda: logger.child_pids, 60)  # past Django's start in the child
        else:
            logger = ThreadPerQueryLogger(1000, retry_initial=0.05, retry_max=0.2)
            loggers.append(logger)
        for e in make_entries(30):
            assert logger.log_async(e)
        time.sleep(0.3)  # the writers are waiting on the lock now

        started = time.monotonic()
        report = logger.close(timeout=0.5)
        took = time.monotonic() - started
    time.sleep(1.5)  # time for a straggler to write, were there one

    assert report == CloseReport(written=0, unwritten=30, dropped=0)
    assert QueryLog.objects.count() == 0
    assert took < 4


@pytest.mark.skipif(connection.vendor != "postgresql", reason=POSTGRES_ONLY)
@pytest.mark.django_db(transaction=True)
def test_it_retries_while_the_table_is_locked_on_postgresql_and_writes_everything_after(loggers, monkeypatch):
    # PostgreSQL would make a writer wait on the lock for ever; a 100 ms lock_timeout
    # on the writers' connections turns the wait into errors and retries, as a
    # long migration or VACUUM FULL on the web side would.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "options", "-c lock_timeout=100")
    locker = connection.get_new_connection(connection.get_connection_params())
    locker.execute("LOCK TABLE querylog_querylog IN ACCESS EXCLUSIVE MODE")  # held until commit
    locked_at = time.monotonic()
    writer = SignallingWriter(QueryLogWriter("test"), after=3)
    logger = pool(loggers, batch=100, writer=writer, retry_initial=0.05, retry_max=0.2).start()
    try:
        for e in make_entries(500):
            assert logger.log_async(e)
        assert writer.failed.wait(10)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - locked_at)))
    finally:
        locker.commit()
        locker.close()

    report = logger.close(timeout=20)

    assert report == CloseReport(written=500, unwritten=0, dropped=0)
    assert logger.write_errors >= 3
    assert QueryLog.objects.count() == 500
