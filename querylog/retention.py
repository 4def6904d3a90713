"""Deleting query log rows (and rollups) older than the retention window.

Deletes go in small batches, each its own short transaction: one DELETE of a
week's rows would hold SQLite's only write lock for seconds and the query logger's
writers would stall behind it. Between batches the purge takes a pause so a
waiting writer gets in.

The engine runs ``RetentionThread`` (hourly by default); ``manage.py purgequerylog``
runs ``querylog_purge`` once.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from datetime import datetime, timedelta

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)
from django.db.models import Model
from django.utils import timezone

from querylog.db import sqlite_write_lock
from querylog.models import AnswerRollup, ClientRollup, DomainRollup, QueryLog, QueryRollup, RollupSummary
from querylog.selectors import summaries_build

log = logging.getLogger(__name__)


def _delete_older(
    model: type[Model],
    field: str,
    cutoff,
    batch: int,
    *,
    pause: float,
    stop: threading.Event | None,
    using: str,
    where: dict | None = None,
) -> int:
    """Delete rows with ``field < cutoff`` (and ``where``) in batches of at most ``batch``; return the count."""
    connection = connections[using]
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    pk = qn(model._meta.pk.column)
    lock = sqlite_write_lock(using)
    # The time index finds the oldest rows; the LIMIT keeps each DELETE (and the
    # write lock it holds) short. Raw SQL rather than QuerySet.delete(): a
    # post_delete receiver for all models (dnsengine.signals) would make Django
    # fetch every row into Python first. IN (subquery) with LIMIT works on SQLite
    # and PostgreSQL and has no parameter-count limit.
    rows = model._default_manager.using(using).filter(**{f"{field}__lt": cutoff}, **(where or {}))
    oldest = rows.order_by().values("pk")[:batch]
    subquery, params = oldest.query.get_compiler(using=using).as_sql()
    sql = f"DELETE FROM {table} WHERE {pk} IN ({subquery})"
    stop = stop or threading.Event()
    deleted = 0
    while not stop.is_set():
        with lock or nullcontext(), transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(sql, params)
            n = cursor.rowcount
        deleted += n
        if n < batch:
            break
        if pause and stop.wait(pause):
            break
    return deleted


def querylog_purge(
    older_than_days: int | None,
    batch: int = 5000,
    *,
    pause: float = 0.0,
    stop: threading.Event | None = None,
    using: str = DEFAULT_DB_ALIAS,
    now: datetime | None = None,
    rollup_days: int | None = -1,
) -> int:
    """Delete QueryLog rows older than ``older_than_days`` and rollups older than ``rollup_days``.

    Returns the QueryLog rows deleted. ``0`` days deletes everything before now; None
    keeps that kind. ``rollup_days=-1`` (the default) purges the rollups with the rows,
    as ``manage.py purgequerylog --days`` does. ``stop`` ends the purge between batches
    (engine shutdown); ``pause`` is slept between batches.
    """
    if rollup_days == -1:
        rollup_days = older_than_days
    if (older_than_days is not None and older_than_days < 0) or (rollup_days is not None and rollup_days < 0):
        raise ValueError("days must be >= 0")
    if batch < 1:
        raise ValueError("batch must be >= 1")
    now = now or timezone.now()
    rows = 0
    if older_than_days is not None:
        cutoff = now - timedelta(days=older_than_days)
        rows = _delete_older(QueryLog, "timestamp", cutoff, batch, pause=pause, stop=stop, using=using)
        if rows:
            log.info("query log retention: deleted %d rows before %s", rows, cutoff)
    if rollup_days is not None:
        rollup_purge(now - timedelta(days=rollup_days), batch, pause=pause, stop=stop, using=using)
    return rows


def rollup_purge(cutoff: datetime, batch: int, *, pause: float, stop: threading.Event | None, using: str) -> int:
    """Delete the rollups and stored summaries wholly before ``cutoff``; return how many rows."""
    # A rollup bucket is kept while any part of it is inside the window, so totals
    # for the oldest hour shown can include a few rows already purged.
    minute_cutoff = cutoff.replace(second=0, microsecond=0)
    hour_cutoff = minute_cutoff.replace(minute=0)
    rollups = _delete_older(QueryRollup, "bucket", minute_cutoff, batch, pause=pause, stop=stop, using=using)
    for model in (DomainRollup, ClientRollup, AnswerRollup):
        rollups += _delete_older(model, "bucket", hour_cutoff, batch, pause=pause, stop=stop, using=using)
    # A stored dashboard summary goes once its whole hour or day is before the cutoff.
    for hours, period_cutoff in ((1, hour_cutoff), (24, hour_cutoff.replace(hour=0))):
        rollups += _delete_older(
            RollupSummary, "start", period_cutoff, batch, pause=pause, stop=stop, using=using, where={"hours": hours}
        )
    if rollups:
        log.info("query log retention: deleted %d rollup rows before %s", rollups, cutoff)
    return rollups


class RetentionThread:
    """Runs querylog_purge now and then every ``interval`` seconds until stopped.

    ``days`` is the detailed rows' retention, ``rollup_days`` the rollups' (None: keep).
    ``0`` in settings means keep everything: ``retention_thread_from_settings`` passes
    None for it, and returns None when both are kept.
    """

    def __init__(
        self,
        days: int | None,
        *,
        rollup_days: int | None = -1,
        interval: float = 3600.0,
        batch: int = 5000,
        pause: float = 0.05,
    ) -> None:
        self.days = days
        self.rollup_days = days if rollup_days == -1 else rollup_days
        self.interval = interval
        self.batch = batch
        self.pause = pause
        self.runs = 0
        self.deleted = 0
        self.summaries = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime | None = None) -> int:
        """Purge, then store the dashboard summaries of the hours and days that closed since the last run.

        `now`: the clock, for tests.
        """
        close_old_connections()
        try:
            deleted = querylog_purge(
                self.days, self.batch, pause=self.pause, stop=self._stop, now=now, rollup_days=self.rollup_days
            )
            self.deleted += deleted
            # So that no web worker has to group rollups on a page view.
            if not self._stop.is_set():
                self.summaries += summaries_build(now)
            return deleted
        except (OperationalError, InterfaceError) as exc:
            # Database busy, down or restarting: the next run tries again; the reason fits on one line.
            log.warning("query log retention failed; retrying in %.0f s: %s", self.interval, " ".join(str(exc).split()))
            return 0
        except Exception:
            log.exception("query log retention failed; retrying in %.0f s", self.interval)
            return 0
        finally:
            self.runs += 1
            close_old_connections()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.run_once()
                if self._stop.wait(self.interval):
                    return
        finally:
            connections.close_all()

    def start(self) -> RetentionThread:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="querylog-retention", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def retention_thread_from_settings(values: dict[str, object] | None = None) -> RetentionThread | None:
    """The thread GLORYHOLE_QUERY_LOG_RETENTION_DAYS (rows) and GLORYHOLE_ROLLUP_RETENTION_DAYS describe.

    ``values``: those saved on the settings page (dnsengine.engine_settings, from rundns),
    over settings.py's. Not started; None if both are 0 (keep all).
    """
    values = values or {}
    days = values.get("GLORYHOLE_QUERY_LOG_RETENTION_DAYS", settings.GLORYHOLE_QUERY_LOG_RETENTION_DAYS) or None
    rollup_days = values.get("GLORYHOLE_ROLLUP_RETENTION_DAYS", settings.GLORYHOLE_ROLLUP_RETENTION_DAYS) or None
    if days is None and rollup_days is None:
        return None
    return RetentionThread(days, rollup_days=rollup_days, interval=settings.GLORYHOLE_QUERY_LOG_PURGE_INTERVAL)
