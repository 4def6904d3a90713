from __future__ import annotations

import os
import threading

import pytest
from django.db import OperationalError

from dnsengine.core.stats import EngineStats
from dnsengine.models import EngineStatus
from dnsengine.runtime import heartbeat as heartbeat_module
from dnsengine.runtime.heartbeat import Heartbeat, engine_status_publish
from gloryhole_site.testing.querylog import RecordingWriter, make_entries
from querylog.logger.pool import QueryLogger


@pytest.fixture
def logger():
    logger = QueryLogger(100, 2, 10, 0.01, writer=RecordingWriter())
    for e in make_entries(30):
        logger.log_async(e)  # not started: 30 queued
    yield logger
    logger.close(timeout=5)


@pytest.mark.django_db
def test_it_publishes_the_engine_and_query_log_state(logger):
    stats = EngineStats()
    for _ in range(7):
        stats.record("forwarded", 100)

    engine_status_publish("127.0.0.1:5300", 1_700_000_000.0, stats, logger, generation=4, threads=9)

    row = EngineStatus.objects.get(name="127.0.0.1:5300")
    assert (row.pid, row.queries_total, row.generation, row.threads) == (os.getpid(), 7, 4, 9)
    assert (row.buffer_size, row.buffer_capacity, row.drops, row.written) == (30, 100, 0, 0)
    assert (row.workers, row.mode, row.qps) == (2, "pool", 0)
    assert row.started_at.timestamp() == 1_700_000_000.0


@pytest.mark.django_db
def test_it_computes_qps_and_write_rate_from_the_previous_call(logger):
    stats = EngineStats()
    engine_status_publish("e1", None, stats, logger, now=100.0)
    for _ in range(50):
        stats.record("cached", 10)
    logger.start()
    logger.close(timeout=5)  # writes the 30 queued entries

    engine_status_publish("e1", None, stats, logger, now=102.0)

    row = EngineStatus.objects.get(name="e1")
    assert (row.qps, row.write_rate, row.written) == (25.0, 15.0, 30)
    assert EngineStatus.objects.count() == 1  # upserted, not inserted again


@pytest.mark.django_db(transaction=True)  # beat() closes old connections, as its thread does
def test_a_beat_survives_a_database_error(monkeypatch):
    beat = Heartbeat("e2", EngineStats(), None, interval=60)

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(heartbeat_module, "engine_status_publish", locked)
    assert beat.beat() is False
    monkeypatch.undo()
    assert beat.beat() is True
    assert (beat.beats, beat.failures) == (1, 1)
    assert EngineStatus.objects.filter(name="e2", mode="off").exists()


@pytest.mark.django_db(transaction=True)
def test_a_failed_beat_is_logged_on_one_line_once_a_minute(monkeypatch, caplog):
    beat = Heartbeat("e4", EngineStats(), None, interval=60)

    def down(*args, **kwargs):
        raise OperationalError("connection failed: Connection refused\n\tIs the server running on that host?")

    monkeypatch.setattr(heartbeat_module, "engine_status_publish", down)
    for _ in range(3):
        beat.beat()

    (record,) = [r for r in caplog.records if r.name == "dnsengine.runtime.heartbeat"]
    assert "Connection refused Is the server running" in record.getMessage()
    assert "\n" not in record.getMessage()
    assert record.exc_info is None


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_publishes_until_stopped(monkeypatch):
    first = threading.Event()
    real = heartbeat_module.engine_status_publish

    def publish(*args, **kwargs):
        row = real(*args, **kwargs)
        first.set()
        return row

    monkeypatch.setattr(heartbeat_module, "engine_status_publish", publish)
    beat = Heartbeat("e3", EngineStats(), None, interval=0.05).start()
    assert first.wait(5)

    beat.stop()

    assert not beat._thread.is_alive()
    assert EngineStatus.objects.filter(name="e3").exists()
    assert beat.failures == 0


@pytest.mark.django_db(transaction=True)  # beat() closes old connections
def test_it_publishes_the_clients_the_rate_limiter_refuses():
    Heartbeat("e-rl", EngineStats(), None, interval=60, rate_limited=lambda: ["192.0.2.9", "192.0.2.3"]).beat()
    Heartbeat("e-none", EngineStats(), None, interval=60).beat()

    rows = dict(EngineStatus.objects.values_list("name", "rate_limited"))
    assert rows == {"e-rl": ["192.0.2.3", "192.0.2.9"], "e-none": []}


@pytest.mark.django_db(transaction=True)  # beat() closes old connections
def test_a_failing_rate_limiter_does_not_stop_the_heartbeat():
    def broken():
        raise RuntimeError("limiter down")

    assert Heartbeat("e-broken", EngineStats(), None, interval=60, rate_limited=broken).beat()
    assert EngineStatus.objects.get(name="e-broken").rate_limited == []


@pytest.mark.django_db
def test_it_stores_a_bounded_list_of_rate_limited_clients(monkeypatch):
    monkeypatch.setattr(heartbeat_module, "RATE_LIMITED_MAX", 3)
    engine_status_publish("e-many", None, EngineStats(), rate_limited=[f"10.0.0.{i}" for i in range(9)])
    assert len(EngineStatus.objects.get(name="e-many").rate_limited) == 3
