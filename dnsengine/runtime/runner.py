"""Everything `rundns` runs, in start and stop order.

Start: wait until the database answers and the first snapshot is loaded
(nothing is bound before that, so no client gets an unfiltered answer; a
missing or unmigrated database stops start-up instead), then bind the DNS
port, the query logger, the engine, then the metrics endpoint, heartbeat and
retention. Stop: the listeners first (nothing new arrives), then the query
logger drains everything it accepted, then a last heartbeat publishes the
final counts, then the database connections close. Storage closes after the logger,
or the entries still queued would be lost.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import socket
import threading
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from dnsengine.core import compiled
from dnsengine.models import EngineStatus
from dnsengine.runtime.config import EngineConfig
from dnsengine.runtime.dbcheck import DatabaseUnreachable, database_check, one_line
from dnsengine.runtime.engine import Engine
from dnsengine.runtime.heartbeat import Heartbeat
from dnsengine.runtime.metrics import MetricsServer, start_metrics_server
from dnsengine.runtime.processes import heartbeat_name
from gloryhole_site.envfile import apply_env_file
from querylog.logger import config as query_log
from querylog.logger.config import QueryLogConfig
from querylog.logger.counters import CloseReport
from querylog.logger.swappable import SwappableQueryLogger
from querylog.retention import RetentionThread, retention_thread_from_settings

logger = logging.getLogger(__name__)

# While the database cannot be reached at start: seconds between two attempts,
# and between two log lines saying so.
DATABASE_RETRY_SECONDS = 1.0
DATABASE_WAIT_REPORT_SECONDS = 10.0
# EngineStatus.name's length.
ENGINE_NAME_MAX = 200


def query_log_config(saved: dict[str, object] | None) -> QueryLogConfig:
    """The query logger's config: settings.py's, with the values saved on the settings page over it.

    ``saved``: the config watcher's ``settings`` (only the saved ones the environment does not fix).
    """
    config = QueryLogConfig.from_settings()
    fields = {
        query_log.MODE.name: "mode",
        query_log.BUFFER.name: "buffer_size",
        query_log.WORKERS.name: "workers",
        query_log.BATCH.name: "batch_size",
    }
    changes = {field: (saved or {})[name] for name, field in fields.items() if name in (saved or {})}
    if "mode" in changes:
        changes["mode"] = str(changes["mode"]).strip().lower()
    return dataclasses.replace(config, **changes)


class EngineStartError(Exception):
    """The engine cannot start for a reason outside its settings' syntax (a port in use); one line."""


class EngineRunner:
    """``worker``/``processes``: this engine is worker K of ``rundns --processes N`` (dnsengine.runtime.processes).

    A worker binds with SO_REUSEPORT, beats as "<engine name>/<K>", serves metrics on
    GLORYHOLE_METRICS_PORT + K and logs its queries under the engine's name; only
    worker 0 runs the retention and the scheduled blocklist updates, which act on the
    shared database once for all.
    """

    def __init__(self, config: EngineConfig, *, worker: int | None = None, processes: int = 1) -> None:
        # A worker's row is "<name>/<K>".
        name_max = ENGINE_NAME_MAX - (len(f"/{worker}") if worker is not None else 0)
        if len(config.engine_name) > name_max:
            # The heartbeat's row would be refused on every beat (PostgreSQL checks the length).
            raise ImproperlyConfigured(
                f"GLORYHOLE_ENGINE_NAME is {len(config.engine_name)} characters long; at most {name_max}"
            )
        self.worker = worker
        self.processes = processes
        if worker is not None and config.metrics_port:
            config = dataclasses.replace(config, metrics_port=config.metrics_port + worker)
        self.config = config
        self.engine = Engine(config)
        if worker is not None:
            self.engine.server.reuse_port = True
            for server in self.engine.encrypted_servers:
                server.reuse_port = True
            if worker > 0:
                self.engine.updater = None
        self.query_logger: SwappableQueryLogger | None = None
        self.metrics: MetricsServer | None = None
        self.heartbeat: Heartbeat | None = None
        self.retention: RetentionThread | None = None

    @property
    def name(self) -> str:
        return self.config.engine_name

    @property
    def heartbeat_name(self) -> str:
        return heartbeat_name(self.name, self.worker)

    def start(
        self, stop: threading.Event | None = None, *, wait_report_interval: float = DATABASE_WAIT_REPORT_SECONDS
    ) -> bool:
        """Start everything; False if `stop` was set while waiting for the database (nothing started).

        Raises ImproperlyConfigured (a missing or unmigrated database among
        others) and EngineStartError (a port that cannot be bound).
        """
        if not self.wait_for_configuration(stop or threading.Event(), wait_report_interval):
            return False
        try:
            port = self.engine.server.bind()
        except OSError as exc:
            raise EngineStartError(
                f"cannot listen for DNS on {self.config.host}:{self.config.port} "
                f"(GLORYHOLE_DNS_HOST / --host, GLORYHOLE_DNS_PORT / --port): {exc.strerror or exc}"
            ) from None
        for name, server in (("DOT", self.engine.dot), ("DOH", self.engine.doh)):
            if server is None:
                continue
            try:
                server.bind()
            except OSError as exc:
                self.engine.server.close()
                for bound in self.engine.encrypted_servers:
                    bound.close()
                raise EngineStartError(
                    f"cannot listen for {name.lower()} on {self.config.host}:{server.port} "
                    f"(GLORYHOLE_{name}_PORT, 0 turns it off): {exc.strerror or exc}"
                ) from None
        if not settings.GLORYHOLE_ENGINE_NAME:
            # Named after the port actually bound (it may have been 0).
            self.config = dataclasses.replace(self.config, engine_name=f"{socket.gethostname()}:{port}")
        self.query_logger = SwappableQueryLogger.from_settings(
            engine_name=self.name, config=query_log_config(self.engine.watcher.settings)
        ).start()
        try:
            self.query_logger.privacy_poll()  # the privacy settings in force before the first query
        except DatabaseError as exc:
            logger.warning("cannot read the privacy settings yet (%s); the config watcher retries", one_line(exc))
        self.engine.resolver.query_logger = self.query_logger
        self.engine.watcher.on_poll = self.query_logger.privacy_poll
        try:
            if self.config.metrics_port:
                try:
                    self.metrics = start_metrics_server(
                        settings.GLORYHOLE_METRICS_HOST,
                        self.config.metrics_port,
                        self.query_logger,
                        self.engine.stats,
                        clients=self.engine.clients,
                    )
                except OSError as exc:
                    raise EngineStartError(
                        f"{exc.strerror or exc} (GLORYHOLE_METRICS_HOST, GLORYHOLE_METRICS_PORT; 0 turns it off)"
                    ) from None
            self.engine.start()
            logger.info("DNS %s", compiled.summary())
        except BaseException:
            self.query_logger.close(timeout=5)
            if self.metrics is not None:
                self.metrics.stop()
            raise
        if not self.worker:
            self.stale_worker_rows_delete()
        self.heartbeat = Heartbeat(
            self.heartbeat_name,
            self.engine.stats,
            self.query_logger,
            generation=lambda: self.engine.watcher.generation or 0,
            rate_limited=self.engine.rate_limited_clients,
        ).start()
        if not self.worker:
            self.retention = retention_thread_from_settings(self.engine.watcher.settings)
            if self.retention is not None:
                self.retention.start()
        # Query-log and retention settings saved on /settings/ from now on, and any saved since
        # the logger was built (the watcher thread runs since engine.start()).
        self.engine.watcher.settings_listeners.append(self.query_log_settings_apply)
        if self.engine.watcher.settings is not None:
            self.query_log_settings_apply(self.engine.watcher.settings)
        # Everything loaded so far (Django, the modules, the first blocklist snapshot)
        # lives as long as the process: out of the collector's sight, a full collection
        # no longer walks it, so it is no DNS stall in the p99 (docs/loadtest.md).
        gc.collect()
        gc.freeze()
        return True

    def stale_worker_rows_delete(self) -> None:
        """Worker 0, or a single process: delete this engine's status rows nobody in this run will update.

        Rows of workers of an earlier run (with more processes; any, for a single
        process) and, for worker 0, the row of an earlier single process would
        otherwise show on the status page beside or as part of this engine, down
        for ever.
        """
        prefix = f"{self.name}/"
        stale = [self.name] if self.worker is not None else []
        workers = self.processes if self.worker is not None else 0
        try:
            for name in EngineStatus.objects.filter(name__startswith=prefix).values_list("name", flat=True):
                index = name[len(prefix) :]
                if index.isdigit() and int(index) >= workers:
                    stale.append(name)
            EngineStatus.objects.filter(name__in=stale).delete()
        except DatabaseError as exc:
            logger.warning("cannot delete the status rows of earlier engine workers: %s", one_line(exc))

    def wait_for_configuration(self, stop: threading.Event, report_interval: float) -> bool:
        """Return once the database is ready and its configuration loaded; False if `stop` came first.

        A database that does not exist or is not migrated raises DatabaseMissing
        at once. One that does not answer (PostgreSQL down or starting, SQLite
        locked) is tried again every second and reported every `report_interval`
        seconds, and nothing is served meanwhile, unless GLORYHOLE_FAIL_OPEN lets
        DNS start without lists (the config watcher loads them when it can).
        """
        started = time.monotonic()
        next_report = started
        while True:
            try:
                database_check()
                self.engine.watcher.load_now_or_raise()
                if time.monotonic() - started > 1:
                    logger.info("the database answers after %.0f s of waiting", time.monotonic() - started)
                return True
            except DatabaseUnreachable as exc:
                reason = str(exc)
            except DatabaseError as exc:
                # It passed the check and failed the load: gone again, or going.
                reason = one_line(exc)
            finally:
                connections.close_all()
            if settings.GLORYHOLE_FAIL_OPEN:
                logger.warning(
                    "cannot read the configuration: %s; GLORYHOLE_FAIL_OPEN is on, so DNS is served WITHOUT "
                    "block lists until the database answers",
                    reason,
                )
                return True
            now = time.monotonic()
            if now >= next_report:
                next_report = now + report_interval
                logger.warning(
                    "waiting for the database: %s; DNS is not served until it answers (%.0f s so far)",
                    reason,
                    now - started,
                )
            if stop.wait(min(DATABASE_RETRY_SECONDS, report_interval)):
                return False

    def query_log_settings_apply(self, values: dict[str, object]) -> None:
        """Swap the query logger without loss (as SIGHUP does) and set the retention when their settings changed."""
        config = query_log_config(values)
        if config != self.query_logger.config:
            self.query_logger.reconfigure(config, timeout=settings.GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT)
        if self.worker:
            return  # worker 0 runs the retention for all
        wanted = retention_thread_from_settings(values)  # not started: only its days are read
        if wanted is None:
            if self.retention is not None:
                self.retention.days = self.retention.rollup_days = None  # keep everything from now on
        elif self.retention is None:
            self.retention = wanted.start()
        else:
            self.retention.days, self.retention.rollup_days = wanted.days, wanted.rollup_days

    def reload_logging(self) -> CloseReport | None:
        """SIGHUP: re-read GLORYHOLE_QUERY_LOG_* from the env file and swap loggers without loss."""
        apply_env_file(settings.ENV_FILE, override=True, prefix="GLORYHOLE_QUERY_LOG_")
        report = self.query_logger.reconfigure_from_environ(
            timeout=settings.GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT, base=query_log_config(self.engine.watcher.settings)
        )
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
