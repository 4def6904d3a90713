"""querylog.logger.pool: QueryLogger's intake, its writer threads, and the rows they write."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connection

from gloryhole_site.testing.querylog import RecordingWriter, make_entries, make_entry, pool
from querylog.logger.counters import CloseReport
from querylog.models import DomainRollup, QueryLog

# --- intake -----------------------------------------------------------------------


def test_it_counts_a_drop_when_the_queue_is_full(loggers):
    writer = RecordingWriter(hold=True)
    logger = pool(loggers, buffer=10, batch=1, writer=writer).start()

    assert logger.log_async(make_entry(0))
    assert writer.entered.wait(5)  # the writer holds entry 0 and is stuck in its write
    slowest = 0.0
    results = []
    for i in range(1, 16):
        started = time.perf_counter()
        results.append(logger.log_async(make_entry(i)))
        slowest = max(slowest, time.perf_counter() - started)

    assert results == [True] * 10 + [False] * 5
    assert logger.drops == 5
    assert logger.size == 10
    assert slowest < 0.5  # never waits for the stuck writer (held for up to 20 s)

    writer.release.set()
    report = logger.close(timeout=5)
    assert report == CloseReport(written=11, unwritten=0, dropped=5)
    assert [e.duration_us for e in writer.written] == [100 + i for i in range(11)]


def test_it_writes_every_queued_entry_on_close(loggers):
    writer = RecordingWriter()
    logger = pool(loggers, buffer=5000, workers=2, batch=128, writer=writer)
    entries = make_entries(3000)
    for e in entries:
        assert logger.log_async(e)  # not started: everything is still queued at close

    report = logger.close(timeout=10)

    assert report == CloseReport(written=3000, unwritten=0, dropped=0)
    assert sorted(writer.written, key=lambda e: e.duration_us) == entries


def test_it_counts_an_entry_logged_after_close_as_dropped(loggers):
    logger = pool(loggers, writer=RecordingWriter()).start()
    logger.close(timeout=5)

    assert logger.log_async(make_entry()) is False
    assert logger.drops == 1


def test_it_writes_a_batch_as_soon_as_it_is_full_without_waiting_for_the_flush_interval(loggers):
    writer = RecordingWriter()
    logger = pool(loggers, batch=50, flush=30, writer=writer).start()

    for e in make_entries(50):
        logger.log_async(e)

    assert writer.entered.wait(5)


def test_it_warns_about_the_fill_level_at_most_once_per_interval(loggers, caplog):
    logger = pool(loggers, buffer=100, writer=RecordingWriter())  # not started: the queue only grows
    with caplog.at_level(logging.WARNING, logger="querylog.logger"):
        for e in make_entries(150):
            logger.log_async(e)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "80% full (80/100)" in warnings[0].getMessage()
    assert logger.drops == 50


@pytest.mark.integration
def test_pool_mode_keeps_a_fixed_number_of_threads_under_load(loggers):
    before = threading.active_count()
    logger = pool(loggers, buffer=200_000, workers=3, batch=500, writer=RecordingWriter()).start()
    seen = []

    def caller(start: int) -> None:
        for i, e in enumerate(make_entries(20_000, start=start)):
            logger.log_async(e)
            if i % 1000 == 0:
                seen.append(threading.active_count())

    callers = [threading.Thread(target=caller, args=(n * 20_000,)) for n in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()

    assert max(seen) <= before + 3 + 4  # the writers and our four callers, nothing per entry
    assert len([t for t in threading.enumerate() if t.name.startswith("querylog-writer")]) == 3
    assert logger.close(timeout=10) == CloseReport(written=80_000, unwritten=0, dropped=0)


# --- writing rows -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["pool", "process"])
def test_the_pool_writes_one_row_per_entry_with_every_field(loggers, mode):
    logger = pool(loggers, buffer=5000, workers=2, batch=200, engine_name="engine-a", mode=mode).start()
    entries = make_entries(1000)
    for e in entries:
        logger.log_async(e)

    assert logger.close(timeout=20) == CloseReport(written=1000, unwritten=0, dropped=0)

    rows = {r.duration_us: r for r in QueryLog.objects.all()}
    assert len(rows) == 1000
    for e in entries:
        row = rows[e.duration_us]
        assert row.timestamp == datetime.fromtimestamp(e.timestamp, UTC)
        assert (row.client, row.protocol, row.domain, row.qtype, row.rcode) == (
            e.client,
            e.protocol,
            e.domain,
            e.qtype,
            e.rcode,
        )
        assert (row.status, row.rule, row.upstream, row.engine) == (e.status, e.rule, e.upstream, "engine-a")
        assert (row.duration_us, row.client_name, row.client_group) == (e.duration_us, e.client_name, e.client_group)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["pool", "process"])
def test_a_query_name_with_a_nul_byte_is_written_with_its_batch(loggers, mode):
    # A label is any bytes; PostgreSQL text cannot hold NUL, SQLite can.
    logger = pool(loggers, batch=50, mode=mode).start()
    # The second spells out what PostgreSQL gets for the first: one rollup key for both.
    names = ["a\x00b.example.com", "a\\000b.example.com"]
    for e in [*make_entries(48), *(make_entry(48 + i, domain=n, status="blocked") for i, n in enumerate(names))]:
        assert logger.log_async(e)

    assert logger.close(timeout=20) == CloseReport(written=50, unwritten=0, dropped=0)
    assert logger.write_errors == 0  # the batch was never split into one-row writes
    if connection.vendor == "sqlite":
        assert sorted(QueryLog.objects.filter(domain__startswith="a").values_list("domain", flat=True)) == names
        assert DomainRollup.objects.filter(domain=names[0]).get().count == 1
    else:
        assert QueryLog.objects.filter(domain=names[1]).count() == 2
        assert DomainRollup.objects.filter(domain=names[1]).get().count == 2
