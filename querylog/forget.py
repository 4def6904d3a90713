"""Forgetting a client: deleting its rows and taking its share out of every rollup, exactly.

The rows go in batches, each in its own short transaction (as retention deletes),
so an engine keeps writing meanwhile. In the same transaction as each batch's
DELETE, the rollups those rows fed are decremented by exactly what they added
(the writer adds rows and rollups in one transaction, so every row present has
its counts in the rollups): per-minute totals, per-hour domains and the client's
per-hour counts. Afterwards the client's hourly counts of periods whose rows had
already expired are deleted, and the stored summaries of every hour touched (and
those that name the client) are deleted so the dashboard rebuilds them.

Rollups carry no client in the per-minute and per-domain tables: a share whose rows
expired before the forget stays there, naming no one (docs/privacy.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F, Q
from django.utils import timezone

from querylog.db import sqlite_write_lock
from querylog.models import ClientRollup, DomainRollup, QueryLog, QueryRollup, RollupSummary
from querylog.privacy import HIDDEN_CLIENT

log = logging.getLogger(__name__)

FORGET_BATCH = 500  # rows per transaction: a bound on how long one holds SQLite's write lock


@dataclass(slots=True)
class ForgetReport:
    clients: list[str]
    rows: int = 0
    client_rollups: int = 0
    summaries: int = 0


def forget_targets(target: str, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The client addresses ``target`` names: itself if an IP, else those logged or configured under that name."""
    target = target.strip()
    try:
        address = str(ip_address(target))
    except ValueError:
        pass
    else:
        return [] if address == HIDDEN_CLIENT else [address]
    if not target:
        return []
    from dnsengine.models import Client  # the configured names; a web-layer model, not the hot path

    found = set(QueryLog.objects.using(using).filter(client_name=target).values_list("client", flat=True).distinct())
    found |= set(Client.objects.using(using).filter(name=target, ip__isnull=False).values_list("ip", flat=True))
    found.discard(HIDDEN_CLIENT)
    return sorted(found)


def client_forget(
    target: str,
    *,
    batch: int = FORGET_BATCH,
    pause: float = 0.0,
    stop: threading.Event | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> ForgetReport:
    """Delete every row of the client(s) ``target`` names and their share of the rollups."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    report = ForgetReport(forget_targets(target, using))
    stop = stop or threading.Event()
    started = timezone.now().replace(minute=0, second=0, microsecond=0)
    touched: set[datetime] = set()  # hours whose stored summaries must go
    for client in report.clients:
        while not stop.is_set():
            n = _forget_batch(client, batch, touched, using)
            report.rows += n
            if n < batch:
                break
            if pause:
                stop.wait(pause)
        with _write(using):
            # Hours before the forget began: what is left is the share of rows retention
            # already deleted. The current hour was decremented exactly; only empties go.
            report.client_rollups += _delete(
                ClientRollup.objects.using(using).filter(Q(client=client) & (Q(bucket__lt=started) | Q(count__lte=0)))
            )
    report.summaries = _forget_summaries(report.clients, touched, using)
    if report.clients:
        log.info("forgot %s: %d rows, %d client rollups", ", ".join(report.clients), report.rows, report.client_rollups)
    return report


@contextlib.contextmanager
def _write(using: str) -> Iterator[None]:
    """The in-process SQLite write lock (the writers take it too), then one transaction."""
    with sqlite_write_lock(using) or nullcontext(), transaction.atomic(using=using):
        yield


def _forget_batch(client: str, batch: int, touched: set[datetime], using: str) -> int:
    with _write(using):
        rows = list(
            QueryLog.objects.using(using)
            .filter(client=client)
            .order_by()
            .values_list("pk", "timestamp", "domain", "status")[:batch]
        )
        if not rows:
            return 0
        minutes: dict[tuple[datetime, str], int] = {}
        domains: dict[tuple[datetime, str, str], int] = {}
        hours: dict[datetime, list[int]] = {}  # hour -> [count, blocked]
        for _, ts, domain, status in rows:
            minute = ts.replace(second=0, microsecond=0)
            hour = minute.replace(minute=0)
            minutes[(minute, status)] = minutes.get((minute, status), 0) + 1
            if domain:  # rows stored at privacy level 1 or 2 fed no domain rollup
                domains[(hour, domain, status)] = domains.get((hour, domain, status), 0) + 1
            counts = hours.setdefault(hour, [0, 0])
            counts[0] += 1
            counts[1] += status == QueryLog.Status.BLOCKED
            touched.add(hour)
        QueryLog.objects.using(using).filter(pk__in=[pk for pk, *_ in rows]).order_by()._raw_delete(using)
        # Sorted, table by table, in the writer's order: on PostgreSQL a concurrent
        # writer's upserts then take row locks in the same order and cannot deadlock.
        for (minute, status), n in sorted(minutes.items()):
            QueryRollup.objects.using(using).filter(bucket=minute, status=status).update(count=F("count") - n)
        for (hour, domain, status), n in sorted(domains.items()):
            DomainRollup.objects.using(using).filter(bucket=hour, domain=domain, status=status).update(
                count=F("count") - n
            )
        for hour, (n, blocked) in sorted(hours.items()):
            ClientRollup.objects.using(using).filter(bucket=hour, client=client).update(
                count=F("count") - n, blocked=F("blocked") - blocked
            )
        _delete(QueryRollup.objects.using(using).filter(count__lte=0, bucket__in={m for m, _ in minutes}))
        _delete(DomainRollup.objects.using(using).filter(count__lte=0, bucket__in={h for h, *_ in domains}))
        return len(rows)


def _delete(queryset) -> int:
    # _raw_delete: no post_delete receivers to feed (dnsengine.signals would fetch every row first).
    return queryset.order_by()._raw_delete(queryset.db)


def _forget_summaries(clients: list[str], hours: set[datetime], using: str) -> int:
    """Delete the stored summaries of the hours touched, their days, and any that lists a client."""
    days = {h.replace(hour=0) for h in hours}
    stale = Q(hours=1, start__in=hours) | Q(hours=24, start__in=days)
    for client in clients:
        stale |= Q(clients__has_key=client)
    with _write(using):
        return _delete(RollupSummary.objects.using(using).filter(stale))
