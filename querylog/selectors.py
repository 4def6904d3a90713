"""Reads for the web pages and the JSON API: query history and dashboard figures.

The history reads QueryLog with keyset pagination; the dashboard reads only the
rollup tables, because a count over millions of QueryLog rows on every page
view is exactly what the rollups exist to avoid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from querylog.forms import HistoryFilter, cursor_encode
from querylog.models import ClientRollup, DomainRollup, QueryLog, QueryRollup

HISTORY_FIELDS = (
    "id",
    "timestamp",
    "client",
    "protocol",
    "domain",
    "qtype",
    "rcode",
    "status",
    "rule",
    "upstream",
    "duration_us",
    "engine",
)


@dataclass(slots=True)
class HistoryPage:
    rows: list[dict]
    next_cursor: str | None


def _history_queryset(f: HistoryFilter) -> QuerySet:
    qs = QueryLog.objects.all()
    if f.start is not None:
        qs = qs.filter(timestamp__gte=f.start)
    if f.end is not None:
        qs = qs.filter(timestamp__lte=f.end)
    if f.client:
        qs = qs.filter(client=f.client)
    if f.domain_mode == "exact":
        qs = qs.filter(domain=f.domain)
    elif f.domain_mode == "suffix":
        qs = qs.filter(Q(domain=f.domain) | Q(domain__endswith="." + f.domain))
    elif f.domain_mode == "substring":
        qs = qs.filter(domain__contains=f.domain)
    if f.qtype:
        qs = qs.filter(qtype=f.qtype)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.rcode:
        qs = qs.filter(rcode=f.rcode)
    return qs


def _after_cursor(qs: QuerySet, cursor: tuple[datetime, int] | None) -> QuerySet:
    if cursor is None:
        return qs
    ts, pk = cursor
    # The plain `timestamp <= ts` lets the database walk the timestamp index from
    # the cursor; the OR then drops the rows already shown at that same instant.
    return qs.filter(timestamp__lte=ts).filter(Q(timestamp__lt=ts) | Q(pk__lt=pk))


def query_history(f: HistoryFilter) -> HistoryPage:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    qs = _after_cursor(_history_queryset(f), f.before).order_by("-timestamp", "-pk")
    rows = list(qs.values(*HISTORY_FIELDS)[: f.limit + 1])
    next_cursor = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        last = rows[-1]
        next_cursor = cursor_encode(last["timestamp"], last["id"])
    return HistoryPage(rows=rows, next_cursor=next_cursor)


def query_history_export(f: HistoryFilter, max_rows: int, chunk: int = 2000) -> Iterator[dict]:
    """Every row of the filter, newest first, at most max_rows, read page by page.

    Pages rather than one long cursor: each read is short, so an export of a busy
    log never holds a read transaction open while the client downloads slowly.
    """
    cursor = f.before
    remaining = max_rows
    base = _history_queryset(f)
    while remaining > 0:
        size = min(chunk, remaining)
        qs = _after_cursor(base, cursor).order_by("-timestamp", "-pk")
        rows = list(qs.values(*HISTORY_FIELDS)[:size])
        yield from rows
        if len(rows) < size:
            return
        remaining -= len(rows)
        cursor = (rows[-1]["timestamp"], rows[-1]["id"])


# --- Dashboard ------------------------------------------------------------------------

# Chart resolution per window: (bucket length, number of buckets).
CHART_STEPS = {
    "1h": (timedelta(minutes=1), 60),
    "24h": (timedelta(minutes=15), 96),
    "7d": (timedelta(hours=2), 84),
}
# The chart's three series; everything that is neither blocked nor cached was
# answered normally (forwarded, allowlisted, local, or failed upstream).
SERIES = ("allowed", "blocked", "cached")
TOP_N = 10


@dataclass(slots=True)
class ChartPoint:
    start: datetime
    allowed: int
    blocked: int
    cached: int

    @property
    def total(self) -> int:
        return self.allowed + self.blocked + self.cached


@dataclass(slots=True)
class DashboardStats:
    window: str
    start: datetime
    end: datetime
    total: int
    blocked: int
    cached: int
    by_status: dict[str, int]
    clients: int
    chart: list[ChartPoint]
    chart_step: timedelta
    top_domains: list[tuple[str, int]]
    top_blocked: list[tuple[str, int]]
    top_clients: list[tuple[str, int]]
    hourly_since: datetime  # top lists come from hourly rollups: they start at this hour

    @property
    def blocked_pct(self) -> float:
        return 100.0 * self.blocked / self.total if self.total else 0.0

    @property
    def cached_pct(self) -> float:
        return 100.0 * self.cached / self.total if self.total else 0.0

    @property
    def per_client(self) -> float:
        return self.total / self.clients if self.clients else 0.0


def _series_of(status: str) -> str:
    return status if status in ("blocked", "cached") else "allowed"


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return moment - (moment - epoch) % step


def dashboard_stats(window: str, now: datetime | None = None) -> DashboardStats:
    """Totals, chart and top lists for the last `window` (a key of CHART_STEPS), from rollups only."""
    now = now or timezone.now()
    step, buckets = CHART_STEPS[window]
    # The chart ends with the bucket holding `now`, so the newest minute shows up.
    chart_start = _floor(now, step) - step * (buckets - 1)
    start = chart_start
    minute_rows = (
        QueryRollup.objects.filter(bucket__gte=chart_start, bucket__lte=now)
        .values_list("bucket", "status", "count")
        .iterator(chunk_size=5000)
    )
    by_status: dict[str, int] = {}
    points = [ChartPoint(chart_start + step * i, 0, 0, 0) for i in range(buckets)]
    step_us = step // timedelta(microseconds=1)
    for bucket, status, count in minute_rows:
        by_status[status] = by_status.get(status, 0) + count
        index = ((bucket - chart_start) // timedelta(microseconds=1)) // step_us
        if 0 <= index < buckets:
            point = points[index]
            series = _series_of(status)
            setattr(point, series, getattr(point, series) + count)
    total = sum(by_status.values())

    hourly_since = _floor(start, timedelta(hours=1))
    domains = DomainRollup.objects.filter(bucket__gte=hourly_since, bucket__lte=now)
    top_domains = list(
        domains.values("domain").annotate(n=Sum("count")).order_by("-n", "domain").values_list("domain", "n")[:TOP_N]
    )
    top_blocked = list(
        domains.filter(status="blocked")
        .values("domain")
        .annotate(n=Sum("count"))
        .order_by("-n", "domain")
        .values_list("domain", "n")[:TOP_N]
    )
    clients = ClientRollup.objects.filter(bucket__gte=hourly_since, bucket__lte=now)
    per_client = clients.values("client").annotate(n=Sum("count")).order_by("-n", "client").values_list("client", "n")
    top_clients = list(per_client[:TOP_N])
    client_count = clients.values("client").distinct().count()

    return DashboardStats(
        window=window,
        start=start,
        end=now,
        total=total,
        blocked=by_status.get("blocked", 0),
        cached=by_status.get("cached", 0),
        by_status=by_status,
        clients=client_count,
        chart=points,
        chart_step=step,
        top_domains=top_domains,
        top_blocked=top_blocked,
        top_clients=top_clients,
        hourly_since=hourly_since,
    )
