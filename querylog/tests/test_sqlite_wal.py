"""The SQLite WAL is truncated after a disk-full error, after a backlog, and when idle."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import OperationalError, connection

from gloryhole_site.testing.querylog import make_entries
from querylog import sqlite_wal
from querylog.logger.counters import CloseReport
from querylog.logger.pool import QueryLogger
from querylog.logger.writer import QueryLogWriter
from querylog.models import QueryLog
from querylog.sqlite_wal import WalKeeper, is_disk_full, wal_size, wal_truncate

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's WAL")


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def page_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_count")
        return cursor.fetchone()[0]


@pytest.fixture
def small_disk(monkeypatch):
    """New connections (the writers' ones) see a database that may grow by ``grow(pages)`` only."""
    options = connection.settings_dict["OPTIONS"]
    original = options.get("init_command", "")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")  # no free pages left by earlier tests: growing means new pages

    def grow(pages: int | None) -> None:
        limit = "" if pages is None else f" PRAGMA max_page_count = {page_count() + pages};"
        monkeypatch.setitem(options, "init_command", original + limit)

    return grow


def test_a_full_database_is_recognised_as_a_disk_full_error(tmp_path):
    db = sqlite3.connect(tmp_path / "full.sqlite3")
    db.execute("CREATE TABLE t (x)")
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.OperationalError) as full:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    db.close()
    wrapped = OperationalError(str(full.value))
    wrapped.__cause__ = full.value

    assert is_disk_full(full.value)
    assert is_disk_full(wrapped)
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(OperationalError("database is locked"))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_wal_is_truncated_when_writes_fail_for_lack_of_space_and_again_after_the_backlog(small_disk):
    logger = QueryLogger(100_000, 1, 500, 0.02, "wal", retry_initial=0.01, retry_max=0.1).start()
    accepted = 0
    try:
        # Room for the first batches only: the WAL grows, then every write fails.
        small_disk(150)
        for e in make_entries(500):
            accepted += logger.log_async(e)
        assert wait_for(lambda: logger.written == 500)
        assert wal_size() > 0
        for e in make_entries(6000, start=500):
            accepted += logger.log_async(e)
        assert wait_for(lambda: logger.write_errors >= 3)
        assert wait_for(lambda: wal_size() == 0)  # truncated while the writes keep failing
        assert logger.written < 6500
        # The writer counts a truncation just after it: the file may be empty a moment before.
        assert wait_for(lambda: logger.wal_stats.truncations >= 1)

        small_disk(None)  # space again: the backlog is written, then the WAL is truncated again
        assert wait_for(lambda: logger.written == 6500)
        assert wait_for(lambda: wal_size() == 0)
        assert wait_for(lambda: logger.wal_stats.truncations >= 2)
    finally:
        report = logger.close(timeout=10)

    assert report.written + report.dropped + report.unwritten == accepted == 6500
    assert report == CloseReport(written=6500, unwritten=0, dropped=0)
    assert QueryLog.objects.count() == 6500


@pytest.mark.django_db(transaction=True)
def test_a_truncate_that_a_reader_keeps_busy_is_tried_again_later(monkeypatch):
    monkeypatch.setattr(sqlite_wal, "RETRY_AFTER", 0.05)
    QueryLogWriter("wal")(make_entries(300))
    assert wal_size() > 0
    reader = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM querylog_querylog").fetchone()  # holds its snapshot
    QueryLogWriter("wal")(make_entries(300, start=300))  # a snapshot older than the WAL's end
    keeper = WalKeeper("default", None)
    keeper.mark("test")
    try:
        keeper.tend(idle=False)
        assert keeper.stats == sqlite_wal.WalStats(truncations=0, busy=1)
        assert wal_size() > 0
    finally:
        reader.execute("COMMIT")
        reader.close()
    time.sleep(0.06)
    keeper.tend(idle=False)

    assert keeper.stats == sqlite_wal.WalStats(truncations=1, busy=1)
    assert wal_size() == 0
    keeper.tend(idle=False)  # done: nothing is due any more
    assert keeper.stats.truncations + keeper.stats.busy == 2


@pytest.mark.django_db(transaction=True)
def test_a_busy_truncate_gives_up_after_a_few_tries(monkeypatch):
    monkeypatch.setattr(sqlite_wal, "RETRY_AFTER", 0.0)
    monkeypatch.setattr(sqlite_wal, "wal_truncate", lambda using, lock: False)
    keeper = WalKeeper("default", None)
    keeper.mark("test")
    for _ in range(sqlite_wal.TRIES + 3):
        keeper.tend(idle=False)

    assert keeper.stats.busy == sqlite_wal.TRIES


@pytest.mark.django_db(transaction=True)
def test_an_idle_writer_truncates_a_large_wal_now_and_then(monkeypatch):
    monkeypatch.setattr(sqlite_wal, "IDLE_INTERVAL", 0.2)
    monkeypatch.setattr(sqlite_wal, "IDLE_BYTES", 64 * 1024)
    logger = QueryLogger(10_000, 1, 500, 0.02, "wal").start()
    try:
        for e in make_entries(2000):
            logger.log_async(e)
        assert wait_for(lambda: logger.written == 2000)
        # On a slow machine an idle moment can come between two batches too: wait for the
        # last large WAL to go, then count.
        assert wait_for(lambda: logger.wal_stats.truncations >= 1 and wal_size() == 0, timeout=5)
        truncations = logger.wal_stats.truncations
        logger.log_async(make_entries(1)[0])  # a small WAL is left alone
        assert wait_for(lambda: logger.written == 2001)
        time.sleep(0.5)
        assert logger.wal_stats.truncations == truncations
    finally:
        logger.close(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_truncate_never_cuts_into_a_transaction_of_its_connection():
    QueryLogWriter("wal")(make_entries(100))
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            assert wal_truncate() is False
        finally:
            cursor.execute("ROLLBACK")
    assert wal_truncate() is True
    assert wal_size() == 0


def test_only_one_writer_checkpoints_at_a_time(monkeypatch):
    inside, most, lock = [0], [0], threading.Lock()

    def slow_truncate(using, lock_):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return True

    monkeypatch.setattr(sqlite_wal, "wal_truncate", slow_truncate)
    monkeypatch.setattr(sqlite_wal, "wal_size", lambda using: 0)
    keeper = WalKeeper("default", None)
    keeper.mark("test")
    threads = [threading.Thread(target=keeper.tend, args=(False,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert most[0] == 1
    assert keeper.stats.truncations == 1
