"""The engine's Prometheus metrics, served by ``rundns`` on its own port.

Nothing here runs on the DNS path: the listeners and writers keep plain counters
(``EngineStats``, the query logger's stats), and a custom collector turns a snapshot
of them into metrics when Prometheus scrapes. prometheus_client's own metric
objects would take a lock per update on the hot path.

    server = start_metrics_server("127.0.0.1", 9153, query_logger, engine_stats)
    ...
    server.stop()

Names (docs/querylog.md lists them): dns_query_log_buffer_size, dns_query_log_buffer_capacity,
dns_query_log_drops_total, dns_query_log_written_total, dns_query_log_write_errors_total,
dns_query_log_unwritten_total, dns_query_log_workers, dns_query_log_write_rate,
dns_query_log_worker_queue_depth (histogram), dns_query_log_batch_seconds (histogram),
dns_queries_total{status}, dns_query_duration_seconds (histogram),
dns_engine_events_total{event}, dns_engine_refused_total{reason}, dns_engine_rate_limit_clients,
dns_engine_rate_limited_clients, dns_clients_known, dns_client_names{source}, dns_engine_threads,
dns_gc_pause_seconds{generation} (histogram), dns_engine_core_compiled{module,reason},
dns_engine_sqlite_heap_bytes, dns_engine_malloc_bytes{state} and
dns_engine_python_allocated_blocks (memory.py), plus the standard process_* metrics (RSS, CPU, open fds).
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import HTTPServer

from django.conf import settings
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import MetricsHandler
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from dnsengine.core import compiled
from dnsengine.core.access import DISALLOWED, NOT_ALLOWED
from dnsengine.core.clients import ClientDirectory
from dnsengine.core.resolver import RATE_LIMITED
from dnsengine.core.stats import DURATION_BUCKETS_US, EngineStats
from dnsengine.runtime.memory import read_memory
from querylog.logger.counters import HistogramSnapshot

log = logging.getLogger(__name__)

GC_PAUSE_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip

REFUSED_REASONS = (NOT_ALLOWED, DISALLOWED, RATE_LIMITED)
GAUGE_HELP = {
    "rate_limit_clients": "Clients in the rate-limit table (GLORYHOLE_RATE_LIMIT_MAX_CLIENTS bounds it).",
    "rate_limited_clients": "Clients past their rate limit now: their next query would be refused.",
}


class GcPauseTracker:
    """Times each garbage collection through ``gc.callbacks`` into per-generation histograms.

    The callback runs inside the collector, which holds the GIL and is never
    re-entered, so plain list updates are safe.
    """

    def __init__(self, bounds: tuple[float, ...] = GC_PAUSE_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [[0] * (len(bounds) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]
        self._started = 0.0
        self._installed = False

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = min(int(info.get("generation", 0)), 2)
        counts = self.counts[generation]
        for i, bound in enumerate(self.bounds):
            if pause <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        self.sums[generation] += pause

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            try:
                gc.callbacks.remove(self._callback)
            except ValueError:
                pass
            self._installed = False


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (+Inf last) -> Prometheus' cumulative (le, count) pairs."""
    out = []
    running = 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        out.append((floatToGoString(bound), running))
    running += counts[-1]
    out.append(("+Inf", running))
    return out


def _histogram(name: str, doc: str, snap: HistogramSnapshot) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=_buckets(snap.bounds, snap.counts), sum_value=snap.total)


class EngineCollector(Collector):
    """Reads the query logger and engine counters at scrape time."""

    def __init__(self, query_logger=None, engine_stats: EngineStats | None = None, gc_tracker=None,
                 clients: ClientDirectory | None = None) -> None:  # fmt: skip
        self.query_logger = query_logger
        self.engine_stats = engine_stats
        self.gc_tracker = gc_tracker
        self.clients = clients

    def collect(self) -> Iterator[Metric]:
        if self.query_logger is not None:
            yield from self._query_log()
        if self.engine_stats is not None:
            yield from self._engine()
        if self.clients is not None:
            yield from self._clients()
        yield GaugeMetricFamily("dns_engine_threads", "Threads in the engine process.", value=threading.active_count())
        yield self._core()
        yield from self._memory()
        if self.gc_tracker is not None:
            yield self._gc()

    def _core(self) -> Metric:
        core = GaugeMetricFamily(
            "dns_engine_core_compiled",
            "1 when the core module runs compiled (its .so), 0 when it runs its .py; reason says why.",
            labels=["module", "reason"],
        )
        for name, state in compiled.status().items():
            core.add_metric([name.rsplit(".", 1)[1], state.reason], 1 if state.mode == compiled.COMPILED_MODE else 0)
        return core

    def _memory(self) -> Iterator[Metric]:
        reading = read_memory()
        if reading.sqlite_bytes is not None:
            yield GaugeMetricFamily(
                "dns_engine_sqlite_heap_bytes",
                "SQLite's heap, all connections of the process: page caches, statements.",
                value=reading.sqlite_bytes,
            )
        if reading.malloc_in_use_bytes is not None:
            malloc = GaugeMetricFamily(
                "dns_engine_malloc_bytes",
                "The C allocator's memory: in_use (handed out; SQLite's heap is part of it) "
                "and free (freed, kept for reuse).",
                labels=["state"],
            )
            malloc.add_metric(["in_use"], reading.malloc_in_use_bytes)
            malloc.add_metric(["free"], reading.malloc_free_bytes or 0)
            yield malloc
        yield GaugeMetricFamily(
            "dns_engine_python_allocated_blocks", "Live blocks of Python's small-object allocator.",
            value=reading.python_blocks,
        )  # fmt: skip

    def _query_log(self) -> Iterator[Metric]:
        s = self.query_logger.stats()
        yield GaugeMetricFamily("dns_query_log_buffer_size", "Entries waiting to be written.", value=s.size)
        yield GaugeMetricFamily(
            "dns_query_log_buffer_capacity", "Entries the query log buffer holds.", value=s.capacity
        )
        yield CounterMetricFamily("dns_query_log_drops", "Entries refused because the buffer was full.", value=s.drops)
        yield CounterMetricFamily("dns_query_log_written", "Query log rows written.", value=s.written)
        yield CounterMetricFamily(
            "dns_query_log_write_errors", "Failed query log write attempts (each retry counts).", value=s.write_errors
        )
        yield CounterMetricFamily(
            "dns_query_log_unwritten",
            "Entries accepted but given up on (rejected by the database, or left at shutdown).",
            value=s.unwritten,
        )
        not_logged = CounterMetricFamily(
            "dns_query_log_not_logged",
            "Entries the privacy settings kept out of the rows, by reason (level, client, domain, not_blocked); "
            "not drops.",
            labels=["reason"],
        )
        for reason, n in sorted(s.not_logged.items()):
            not_logged.add_metric([reason], n)
        yield not_logged
        wal = self.query_logger.wal_stats
        yield CounterMetricFamily(
            "dns_query_log_wal_truncations", "SQLite WAL checkpoints that emptied it (disk full, backlog, idle).",
            value=wal.truncations,
        )  # fmt: skip
        yield CounterMetricFamily(
            "dns_query_log_wal_truncate_busy", "WAL truncations kept from finishing (readers, a writer, an error).",
            value=wal.busy,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "dns_query_log_workers", "Query log writer threads (writer processes in mode process).", value=s.workers
        )
        yield GaugeMetricFamily(
            "dns_query_log_write_rate", "Rows written per second over the last few seconds.", value=s.write_rate
        )
        mode = GaugeMetricFamily("dns_query_log_mode", "Query log mode in use (1 for the active one).", labels=["mode"])
        mode.add_metric([s.mode], 1)
        yield mode
        yield _histogram(
            "dns_query_log_worker_queue_depth", "Entries queued when a writer took a batch.", s.queue_depth
        )
        yield _histogram("dns_query_log_batch_seconds", "Time to write one batch, retries included.", s.batch_seconds)

    def _engine(self) -> Iterator[Metric]:
        snap = self.engine_stats.snapshot()
        queries = CounterMetricFamily("dns_queries", "Answered DNS queries by outcome.", labels=["status"])
        for status, count in sorted(snap.queries_by_status.items()):
            queries.add_metric([status], count)
        yield queries
        yield HistogramMetricFamily(
            "dns_query_duration_seconds",
            "Time from receiving a query to sending the answer.",
            buckets=_buckets([b / 1e6 for b in DURATION_BUCKETS_US], snap.duration_bucket_counts),
            sum_value=snap.duration_sum_us / 1e6,
        )
        events = CounterMetricFamily(
            "dns_engine_events", "Engine events: dropped packets, overflows, upstream failures.", labels=["event"]
        )
        refused = CounterMetricFamily(
            "dns_engine_refused", "Queries refused (or dropped) before resolving, by reason.", labels=["reason"]
        )
        by_reason = dict.fromkeys(REFUSED_REASONS, 0)
        for name, count in sorted(snap.counters.items()):
            if name.startswith("refused_"):
                by_reason[name.removeprefix("refused_")] = count
            else:
                events.add_metric([name], count)
        for reason, count in by_reason.items():
            refused.add_metric([reason], count)
        yield events
        yield refused
        for name, read in sorted(self.engine_stats.gauges.items()):
            yield GaugeMetricFamily(f"dns_engine_{name}", GAUGE_HELP.get(name, name), value=read())

    def _clients(self) -> Iterator[Metric]:
        known, by_source = self.clients.counts()
        yield GaugeMetricFamily("dns_clients_known", "Clients the engine has seen and remembers.", value=known)
        names = GaugeMetricFamily(
            "dns_client_names", "Client names in force, by where they came from.", labels=["source"]
        )
        for source, count in sorted(by_source.items()):
            names.add_metric([source], count)
        yield names

    def _gc(self) -> Metric:
        tracker = self.gc_tracker
        family = HistogramMetricFamily(
            "dns_gc_pause_seconds", "Python garbage collection pauses.", labels=["generation"]
        )
        for generation in range(3):
            family.add_metric(
                [str(generation)],
                _buckets(tracker.bounds, list(tracker.counts[generation])),
                tracker.sums[generation],
            )
        return family


class _QuietHTTPServer(HTTPServer):
    # One thread serves scrapes one at a time (Prometheus scrapes a target
    # sequentially), so a scrape never adds a thread to the engine.
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        log.debug("metrics: error serving %s", client_address, exc_info=True)


class _QuietHTTPServer6(_QuietHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """/metrics on its own port and thread; stop() frees the port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, gc_tracker: GcPauseTracker) -> None:
        handler = MetricsHandler.factory(registry)
        handler.timeout = 10  # a client that stalls mid-request cannot hold the only server thread forever
        server_cls = _QuietHTTPServer6 if ":" in host else _QuietHTTPServer
        try:
            self._httpd = server_cls((host, port), handler)
        except OSError as exc:
            # "[Errno 98] Address already in use" alone does not say which address.
            raise OSError(exc.errno, f"cannot listen for metrics on {host}:{port}: {exc.strerror or exc}") from None
        self.registry = registry
        self.gc_tracker = gc_tracker
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        self.gc_tracker.install()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout)
        self._httpd.server_close()
        self.gc_tracker.uninstall()


def metrics_registry(query_logger=None, engine_stats: EngineStats | None = None, gc_tracker=None,
                     clients: ClientDirectory | None = None) -> CollectorRegistry:  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(query_logger, engine_stats, gc_tracker, clients))
    ProcessCollector(registry=registry)
    return registry


def start_metrics_server(host: str, port: int, logger=None, engine_stats: EngineStats | None = None,
                         clients: ClientDirectory | None = None) -> MetricsServer:  # fmt: skip
    """Serve the engine's metrics on host:port (port 0: any free port, see ``server.port``)."""
    tracker = GcPauseTracker()
    server = MetricsServer(host, port, metrics_registry(logger, engine_stats, tracker, clients), tracker)
    return server.start()


def metrics_server_from_settings(logger=None, engine_stats: EngineStats | None = None) -> MetricsServer | None:
    """The server GLORYHOLE_METRICS_HOST/PORT describe, started; None when the port is 0 (disabled)."""
    port = settings.GLORYHOLE_METRICS_PORT
    if not port:
        return None
    host = settings.GLORYHOLE_METRICS_HOST
    return start_metrics_server(host, port, logger, engine_stats)
