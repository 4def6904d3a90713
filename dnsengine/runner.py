"""Everything `rundns` runs, in start and stop order.

Start: bind the DNS port, the query logger, the engine, then the metrics
endpoint, heartbeat and retention. Stop: the listeners first (nothing new
arrives), then the query logger drains everything it accepted, then a last
heartbeat publishes the final counts, then the database connections close.
The Go Glory-Hole closed storage before its logger and lost the queue; this
order is the fix.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import socket

from django.conf import settings
from django.db import connections

from dnsengine.config import EngineConfig
from dnsengine.engine import Engine
from dnsengine.heartbeat import Heartbeat
from gloryhole_site.envfile import apply_env_file
from querylog.logger import CloseReport, SwappableQueryLogger
from querylog.metrics import MetricsServer, start_metrics_server
from querylog.retention import RetentionThread, retention_thread_from_settings

logger = logging.getLogger(__name__)


class EngineRunner:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.engine = Engine(config)
        self.query_logger: SwappableQueryLogger | None = None
        self.metrics: MetricsServer | None = None
        self.heartbeat: Heartbeat | None = None
        self.retention: RetentionThread | None = None

    @property
    def name(self) -> str:
        return self.config.engine_name

    def start(self) -> None:
        port = self.engine.server.bind()
        if not settings.GLORYHOLE_ENGINE_NAME:
            # Named after the port actually bound (it may have been 0).
            self.config = dataclasses.replace(self.config, engine_name=f"{socket.gethostname()}:{port}")
        self.query_logger = SwappableQueryLogger.from_settings(engine_name=self.name).start()
        self.engine.resolver.query_logger = self.query_logger
        try:
            if self.config.metrics_port:
                self.metrics = start_metrics_server(
                    settings.GLORYHOLE_METRICS_HOST, self.config.metrics_port, self.query_logger, self.engine.stats
                )
            self.engine.start()
        except BaseException:
            self.query_logger.close(timeout=5)
            if self.metrics is not None:
                self.metrics.stop()
            raise
        self.heartbeat = Heartbeat(
            self.name,
            self.engine.stats,
            self.query_logger,
            generation=lambda: self.engine.watcher.generation or 0,
        ).start()
        self.retention = retention_thread_from_settings()
        if self.retention is not None:
            self.retention.start()
        # Everything loaded so far (Django, the modules, the first blocklist snapshot)
        # lives as long as the process: out of the collector's sight, a full collection
        # no longer walks it. Measured at 10k QPS: one full collection took 40 ms before,
        # a DNS stall that shows in the p99 (docs/loadtest.md).
        gc.collect()
        gc.freeze()

    def reload_logging(self) -> CloseReport | None:
        """SIGHUP: re-read GLORYHOLE_QUERY_LOG_* from the env file and swap loggers without loss."""
        apply_env_file(settings.ENV_FILE, override=True, prefix="GLORYHOLE_QUERY_LOG_")
        report = self.query_logger.reconfigure_from_environ(timeout=settings.GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT)
        current = self.query_logger.current
        logger.info("query log now mode=%s workers=%s buffer=%s", current.mode, current.workers, current.capacity)
        return report

    def stop(self) -> CloseReport:
        self.engine.stop()
        report = self.query_logger.close(timeout=settings.GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT)
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.metrics is not None:
            self.metrics.stop()
        connections.close_all()
        return report
