from __future__ import annotations

import contextlib
import logging
import math
import random
import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.utils import ConnectionHandler

from gloryhole_site.testing.querylog import RecordingWriter, SignallingWriter, make_entries, make_entry
from querylog.logger import (
    SQLITE_CHUNK_ROWS,
    THREAD_MODE_MAX_CONNECTIONS,
    WRITE_METHODS,
    CloseReport,
    DisabledQueryLogger,
    QueryLogConfig,
    QueryLogger,
    QueryLogWriter,
    SwappableQueryLogger,
    ThreadPerQueryLogger,
    _sqlite_chunk_sizes,
    _sqlite_utc_text,
    query_logger_from_settings,
)
from querylog.memory import read_memory
from querylog.models import DomainRollup, QueryLog


@pytest.fixture
def loggers():
    """Loggers a test builds; closed at teardown even when the test fails."""
    made = []
    yield made
    for logger in made:
        logger.close(timeout=5)


def pool(loggers, *, buffer=1000, workers=1, batch=100, flush=0.02, **kwargs) -> QueryLogger:
    logger = QueryLogger(buffer, workers, batch, flush, **kwargs)
    loggers.append(logger)
    return logger


# --- intake ------------------------------------------------------------------------


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


# --- faults ------------------------------------------------------------------------


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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["pool", "thread"])
def test_close_out_of_time_reports_exactly_what_was_written(loggers, mode):
    # The database stays locked past close()'s timeout: every accepted entry is then
    # counted as unwritten, and none of them may land after close() has said so (the
    # writers waiting for the lock used to write once it was released; on PostgreSQL
    # the waiting statements are cancelled).
    with database_locked():
        if mode == "pool":
            logger = pool(loggers, batch=10, retry_initial=0.05, retry_max=0.2).start()
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


# --- writing rows ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_pool_writes_one_row_per_entry_with_every_field(loggers):
    logger = pool(loggers, buffer=5000, workers=2, batch=200, engine_name="engine-a").start()
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


@pytest.mark.django_db(transaction=True)
def test_a_query_name_with_a_nul_byte_is_written_with_its_batch(loggers):
    # A label is any bytes; PostgreSQL text cannot hold NUL, SQLite can.
    logger = pool(loggers, batch=50).start()
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


@pytest.mark.django_db(transaction=True)
def test_the_fast_insert_stores_exactly_what_bulk_create_stores():
    at = 1_700_000_000.0
    entries = [
        make_entry(0, at=at),
        make_entry(1, at=at + 0.9999997),  # rounds up into the next second
        make_entry(2, at=at + 59.25, client="2001:DB8:0:0::1"),  # IPv6 text normalised by the field
        make_entry(3, at=at + 61, client="::ffff:192.0.2.9", rule="r" * 300, upstream="u" * 100),
        make_entry(4, at=at + 0.5, duration_us=-5, domain="d" * 1100),
        make_entry(5, at=at + 1.000001, duration_us=2**40),
    ]
    fast_methods = [
        m for m in WRITE_METHODS if m != "bulk_create" and (m != "copy" or connection.vendor == "postgresql")
    ]
    for method in ["bulk_create", *fast_methods]:
        QueryLogWriter(method, rollups=False, method=method)(entries)

    fields = [f.name for f in QueryLog._meta.concrete_fields if f.name not in ("id", "engine")]
    orm = list(QueryLog.objects.filter(engine="bulk_create").order_by("id").values_list(*fields))
    fast = list(QueryLog.objects.filter(engine="values").order_by("id").values_list(*fields))
    for method in fast_methods:
        assert list(QueryLog.objects.filter(engine=method).order_by("id").values_list(*fields)) == orm, method
    # And the raw values in the database (text on SQLite), which indexes and range queries see.
    with connection.cursor() as cursor:
        cursor.execute("SELECT engine, timestamp, client FROM querylog_querylog ORDER BY id")
        raw = cursor.fetchall()
    for method in fast_methods:
        assert [r[1:] for r in raw if r[0] == method] == [r[1:] for r in raw if r[0] == "bulk_create"], method
    assert fast[2][1] == "2001:db8::1"
    assert len(fast[3][7]) == 255 and fast[4][3] == "d" * 1004
    assert (fast[4][9], fast[5][9]) == (0, 2147483647)


def test_each_backend_gets_its_fastest_write_method_by_default():
    assert QueryLogWriter().method == ("copy" if connection.vendor == "postgresql" else "values")


@pytest.mark.skipif(connection.vendor == "postgresql", reason="COPY is there on PostgreSQL")
def test_copy_is_refused_on_a_database_without_it():
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        QueryLogWriter(method="copy")


@pytest.mark.skipif(connection.vendor != "postgresql", reason=POSTGRES_ONLY)
@pytest.mark.django_db(transaction=True)
def test_a_values_batch_over_postgresqls_parameter_limit_is_split_into_several_statements():
    # 6000 rows of 11 columns: 66,000 parameters, over the protocol's 65,535.
    QueryLogWriter(rollups=True, method="values")(make_entries(6000))

    assert QueryLog.objects.count() == 6000


@pytest.mark.skipif(connection.vendor != "sqlite", reason=SQLITE_ONLY)
@pytest.mark.django_db(transaction=True)
def test_a_batch_over_the_sqlite_variable_limit_is_split_into_several_statements():
    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)  # 4 rows of 11 columns
    try:
        # Unsplit, SQLite would refuse the statement: "too many SQL variables".
        QueryLogWriter(rollups=False)(make_entries(30))
    finally:
        connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)

    assert QueryLog.objects.count() == 30
    assert sorted(QueryLog.objects.values_list("duration_us", flat=True)) == [100 + i for i in range(30)]


def test_the_sqlite_timestamp_text_matches_djangos_for_many_values():
    # Django's SQLite conversion, whatever the test database is: needs no connection.
    sqlite = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})["default"]
    fast = _sqlite_utc_text()
    rng = random.Random(4)
    values = [rng.uniform(0, 4e9) for _ in range(20000)]
    values += [k + d for k in (0, 1_700_000_000, 2_000_000_000) for d in (0, 1e-7, 4.9e-7, 5e-7, 0.9999995, 0.9999996)]
    values += [math.floor(v) for v in values[:1000]]
    adapt = sqlite.ops.adapt_datetimefield_value
    mismatches = [v for v in values if fast(v) != adapt(datetime.fromtimestamp(v, UTC))]
    assert mismatches == []


# --- SIGHUP: swapping loggers -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_swapping_mode_and_workers_loses_no_entry():
    swappable = SwappableQueryLogger(QueryLogger(20000, 1, 200, 0.02)).start()
    configs = [
        QueryLogConfig(mode="pool", workers=2, buffer_size=20000, batch_size=100, flush_interval=0.02),
        QueryLogConfig(mode="thread", buffer_size=20000),
        QueryLogConfig(mode="pool", workers=1, buffer_size=20000, batch_size=300, flush_interval=0.02),
    ]
    bursts = [2000, 2000, 150, 2000]
    go = [threading.Event() for _ in bursts]
    accepted = []

    def feeder() -> None:
        n = 0
        for event, burst in zip(go, bursts, strict=True):
            assert event.wait(20)
            for e in make_entries(burst, start=n):
                accepted.append(swappable.log_async(e))  # looked up each call, as the engine must
            n += burst

    thread = threading.Thread(target=feeder)
    thread.start()
    go[0].set()
    for i, config in enumerate(configs):
        go[i + 1].set()  # the next burst runs while the swap closes the old logger
        swappable.reconfigure(config, timeout=20)
    thread.join()
    report = swappable.close(timeout=20)

    assert len(accepted) == sum(bursts)
    assert all(accepted)
    assert report == CloseReport(written=sum(bursts), unwritten=0, dropped=0)
    assert QueryLog.objects.count() == sum(bursts)
    assert sorted(QueryLog.objects.values_list("duration_us", flat=True)) == [100 + i for i in range(sum(bursts))]
    assert (swappable.mode, swappable.workers, swappable.generation) == ("pool", 1, 3)


def test_an_entry_sent_to_a_replaced_logger_is_forwarded_to_its_successor():
    first = RecordingWriter()
    swappable = SwappableQueryLogger(QueryLogger(100, 1, 10, 0.02, writer=first)).start()
    stale = swappable.log_async  # a listener that fetched the method before SIGHUP
    second = RecordingWriter()
    swappable.reconfigure(QueryLogConfig(mode="pool", workers=1), writer=second)

    assert stale(make_entry(1)) is True
    report = swappable.close(timeout=5)

    assert report == CloseReport(written=1, unwritten=0, dropped=0)
    assert [e.duration_us for e in second.written] == [101]


# --- configuration -----------------------------------------------------------------


def test_it_builds_the_configured_logger_from_settings(settings):
    settings.GLORYHOLE_QUERY_LOG_MODE = "thread"
    assert isinstance(query_logger_from_settings(), ThreadPerQueryLogger)
    settings.GLORYHOLE_QUERY_LOG_MODE = "pool"
    settings.GLORYHOLE_QUERY_LOG_WORKERS = 3
    logger = query_logger_from_settings()
    assert isinstance(logger, QueryLogger) and logger.workers == 3
    settings.GLORYHOLE_QUERY_LOG_ENABLED = False
    assert isinstance(query_logger_from_settings(), DisabledQueryLogger)


def test_it_rejects_an_unknown_mode(settings):
    settings.GLORYHOLE_QUERY_LOG_MODE = "goroutine"
    with pytest.raises(ImproperlyConfigured, match="GLORYHOLE_QUERY_LOG_MODE"):
        query_logger_from_settings()


def test_sighup_rereads_the_environment(monkeypatch):
    swappable = SwappableQueryLogger.from_settings().start()
    try:
        assert swappable.reconfigure_from_environ() is None  # nothing changed: no swap
        monkeypatch.setenv("GLORYHOLE_QUERY_LOG_MODE", "thread")
        monkeypatch.setenv("GLORYHOLE_QUERY_LOG_BUFFER", "1234")
        swappable.reconfigure_from_environ()
        assert (swappable.mode, swappable.capacity) == ("thread", 1234)
        monkeypatch.setenv("GLORYHOLE_QUERY_LOG_WORKERS", "many")
        with pytest.raises(ImproperlyConfigured, match="GLORYHOLE_QUERY_LOG_WORKERS"):
            swappable.reconfigure_from_environ()
        assert swappable.mode == "thread"  # a bad value leaves the running logger alone
    finally:
        swappable.close(timeout=5)


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 257, 1000, 1999, 2000, 2001, 4100])
@pytest.mark.parametrize("most", [2978, 90, 1])
def test_sqlite_pieces_are_full_pieces_then_powers_of_two_that_add_up(n, most):
    sizes = _sqlite_chunk_sizes(n, most)

    top = min(most, SQLITE_CHUNK_ROWS)
    full = n // top
    assert sum(sizes) == n
    assert sizes[:full] == [top] * full
    rest = sizes[full:]
    assert all(s & (s - 1) == 0 and s < top for s in rest)
    assert sorted(set(rest), reverse=True) == rest  # each power at most once: popcount pieces


def test_a_full_default_batch_is_one_statement():
    assert _sqlite_chunk_sizes(2000, 2978) == [2000]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's statement cache")
@pytest.mark.skipif(read_memory().sqlite_bytes is None, reason="no SQLite memory statistics on this platform")
@pytest.mark.django_db(transaction=True)
def test_batches_of_every_size_do_not_fill_sqlites_heap_with_statements():
    # At 10k QPS a writer takes whatever is queued, so every batch has a different size.
    # One statement per size was compiled afresh and kept in sqlite3's 128-statement
    # cache: ~100 MiB of SQLite's heap in `make soak`.
    writer = QueryLogWriter(rollups=True)
    entries = make_entries(1120)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size = -1024")  # 1 MiB: what grows is not the page cache
    writer(entries[:1000])  # the schema and the largest pieces are in memory from here on
    before = read_memory().sqlite_bytes

    for size in range(1000, 1120, 2):  # 60 distinct batch sizes
        writer(entries[:size])

    grown = read_memory().sqlite_bytes - before
    assert QueryLog.objects.count() == 1000 + sum(range(1000, 1120, 2))
    assert grown < 8 * 2**20, f"SQLite's heap grew by {grown / 2**20:.1f} MiB"
