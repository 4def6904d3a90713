from __future__ import annotations

import gc
import os
import sqlite3
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsengine.core import compiled
from dnsengine.core.stats import EngineStats
from dnsengine.runtime import memory
from dnsengine.runtime.metrics import metrics_server_from_settings, start_metrics_server
from gloryhole_site.testing.querylog import RecordingWriter, make_entries
from querylog.logger.pool import QueryLogger


def scrape(url: str) -> dict[str, dict]:
    """{sample name: {frozenset(labels): value}} from one HTTP scrape."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return samples


@pytest.fixture
def engine_stats() -> EngineStats:
    stats = EngineStats()
    stats.record("blocked", 80)  # 80 us: in the 100 us bucket
    stats.record("forwarded", 3000)
    stats.record("forwarded", 3_000_000)  # beyond the last bucket
    stats.count("udp_dropped", 2)
    return stats


@pytest.fixture
def logger():
    writer = RecordingWriter(hold=True)
    logger = QueryLogger(10, 1, 5, 0.01, writer=writer)
    for e in make_entries(12):  # not started: 10 queued, 2 dropped
        logger.log_async(e)
    yield logger
    writer.release.set()
    logger.close(timeout=5)


@pytest.fixture
def server(logger, engine_stats):
    server = start_metrics_server("127.0.0.1", 0, logger, engine_stats)
    yield server
    server.stop()


def test_it_serves_the_query_log_metrics_over_http(server):
    m = scrape(server.url)

    assert m["dns_query_log_buffer_size"][frozenset()] == 10
    assert m["dns_query_log_buffer_capacity"][frozenset()] == 10
    assert m["dns_query_log_drops_total"][frozenset()] == 2
    assert m["dns_query_log_written_total"][frozenset()] == 0
    assert m["dns_query_log_write_errors_total"][frozenset()] == 0
    assert m["dns_query_log_workers"][frozenset()] == 1
    assert m["dns_query_log_wal_truncations_total"][frozenset()] == 0
    assert m["dns_query_log_wal_truncate_busy_total"][frozenset()] == 0
    assert m["dns_query_log_mode"][frozenset({("mode", "pool")})] == 1
    for histogram in ("dns_query_log_worker_queue_depth", "dns_query_log_batch_seconds"):
        assert f"{histogram}_bucket" in m and f"{histogram}_sum" in m and f"{histogram}_count" in m


def test_it_serves_the_engine_metrics_in_seconds(server):
    m = scrape(server.url)

    assert m["dns_queries_total"] == {
        frozenset({("status", "blocked")}): 1,
        frozenset({("status", "forwarded")}): 2,
    }
    buckets = m["dns_query_duration_seconds_bucket"]
    assert buckets[frozenset({("le", "0.0001")})] == 1
    assert buckets[frozenset({("le", "0.005")})] == 2
    assert buckets[frozenset({("le", "+Inf")})] == 3
    assert m["dns_query_duration_seconds_sum"][frozenset()] == pytest.approx(3.00308)
    assert m["dns_engine_events_total"][frozenset({("event", "udp_dropped")})] == 2
    assert m["dns_engine_threads"][frozenset()] >= 2
    assert "process_resident_memory_bytes" in m


def test_it_says_which_core_modules_run_compiled(server):
    m = scrape(server.url)["dns_engine_core_compiled"]

    expected = {
        frozenset({("module", name.rsplit(".", 1)[1]), ("reason", state.reason)}): float(state.mode == "compiled")
        for name, state in compiled.status().items()
    }
    assert m == expected
    assert len(m) == len(compiled.COMPILED)
    if os.environ.get("GLORYHOLE_NO_EXTENSIONS") == "1":
        assert set(expected.values()) == {0.0}


def test_it_times_garbage_collection_pauses(server):
    gc.collect()

    m = scrape(server.url)

    assert m["dns_gc_pause_seconds_count"][frozenset({("generation", "2")})] >= 1


def test_the_writer_observes_queue_depth_and_batch_time_per_batch(logger, server):
    logger._writer.release.set()
    logger.start()
    logger.close(timeout=5)  # ten entries in batches of five: two batches

    m = scrape(server.url)

    assert m["dns_query_log_written_total"][frozenset()] == 10
    assert m["dns_query_log_worker_queue_depth_count"][frozenset()] == 2
    assert m["dns_query_log_worker_queue_depth_sum"][frozenset()] == 10 + 5
    assert m["dns_query_log_batch_seconds_count"][frozenset()] == 2


def test_stop_frees_the_port(logger, engine_stats):
    server = start_metrics_server("127.0.0.1", 0, logger, engine_stats)
    url = server.url
    scrape(url)

    server.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_port_zero_in_settings_disables_the_server(settings):
    settings.GLORYHOLE_METRICS_PORT = 0
    assert metrics_server_from_settings() is None


@pytest.mark.skipif(
    memory._mallinfo2 is None or memory._sqlite_memory_used is None,
    reason="no mallinfo2 or no SQLite memory statistics on this platform",
)
def test_it_says_where_the_memory_is(server):
    gc.collect()  # a connection an earlier test left to the collector must not be freed between the scrapes
    before = scrape(server.url)["dns_engine_sqlite_heap_bytes"][frozenset()]
    db = sqlite3.connect(":memory:")
    try:
        db.execute("PRAGMA cache_size = -32768")
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", (("x" * 100,) for _ in range(50_000)))  # ~6 MB of pages

        m = scrape(server.url)
    finally:
        db.close()

    assert m["dns_engine_sqlite_heap_bytes"][frozenset()] - before > 4_000_000
    malloc = {dict(labels)["state"]: value for labels, value in m["dns_engine_malloc_bytes"].items()}
    assert malloc["in_use"] > m["dns_engine_sqlite_heap_bytes"][frozenset()]  # SQLite allocates through malloc
    assert malloc["free"] >= 0
    assert m["dns_engine_python_allocated_blocks"][frozenset()] > 10_000
