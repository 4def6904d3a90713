"""Reads for the web pages and the JSON API: query history and dashboard figures.

The history reads QueryLog with keyset pagination; the dashboard reads only the
rollup tables, because a count over millions of QueryLog rows on every page
view is exactly what the rollups exist to avoid.
"""

from __future__ import annotations

import threading
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
# The chart has three series: blocked, cached, and "allowed" for everything
# else that was answered (forwarded, allowlisted, local, or failed upstream).
TOP_N = 10
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# An hour is final once its writers are surely done with it: they flush every
# ~0.5 s, so a minute of slack is plenty.
CLOSE_GRACE = timedelta(minutes=1)
# Per closed hour (and day) only the busiest names are kept. A name in a
# window's top 10 is among the few hundred busiest of every hour it is seen in,
# so the top lists stay exact while the memo stays small.
HOUR_TOP_K = 500
DAY_TOP_K = 2000
CLIENT_TOP_K = 5000
MEMO_DAYS = 8


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


@dataclass(slots=True)
class _Summary:
    """Rollups of one period, reduced to what the dashboard needs."""

    minutes: list[tuple[datetime, str, int]]  # QueryRollup rows: (minute, status, count)
    domains: dict[str, int]
    blocked: dict[str, int]
    clients: dict[str, int]


# Closed hours and days never change again, so each process keeps their
# summaries: a 7-day dashboard then reads one open hour from the database and
# merges the rest from memory instead of grouping a million rollup rows. Keyed by
# period start; entries older than MEMO_DAYS are dropped on the next build.
_hour_memo: dict[datetime, _Summary] = {}
_day_memo: dict[datetime, _Summary] = {}
_memo_lock = threading.Lock()


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return moment - (moment - epoch) % step


def _top(rows: QuerySet, field: str, k: int) -> dict[str, int]:
    """The k largest sums of `count` per `field` among `rows`."""
    return dict(rows.values(field).annotate(n=Sum("count")).order_by("-n").values_list(field, "n")[:k])


def _summary_from_db(start: datetime, end: datetime, k: int) -> _Summary:
    """One period [start, end) read from the rollup tables."""
    minutes = list(
        QueryRollup.objects.filter(bucket__gte=start, bucket__lt=end).values_list("bucket", "status", "count")
    )
    domains = DomainRollup.objects.filter(bucket__gte=start, bucket__lt=end)
    clients = ClientRollup.objects.filter(bucket__gte=start, bucket__lt=end)
    return _Summary(
        minutes=minutes,
        domains=_top(domains, "domain", k),
        blocked=_top(domains.filter(status="blocked"), "domain", k),
        clients=_top(clients, "client", CLIENT_TOP_K),
    )


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    get = into.get
    for key, value in more.items():
        into[key] = get(key, 0) + value


def _hour_summary(hour: datetime) -> _Summary:
    summary = _hour_memo.get(hour)
    if summary is None:
        summary = _summary_from_db(hour, hour + HOUR, HOUR_TOP_K)
        _hour_memo[hour] = summary
    return summary


def _day_summary(day: datetime) -> _Summary:
    summary = _day_memo.get(day)
    if summary is None:
        # One grouped read of the whole day is cheaper than 24 hourly ones
        # (about 0.4 s against 0.6 s for a day of a 5-million-row week).
        summary = _summary_from_db(day, day + DAY, DAY_TOP_K)
        _day_memo[day] = summary
    return summary


def _forget(now: datetime) -> None:
    """Drop what no window can ask for again, so the memo stays a few dozen entries."""
    horizon = _floor(now, DAY) - DAY * MEMO_DAYS
    for memo in (_hour_memo, _day_memo):
        for key in [k for k in memo if k < horizon]:
            del memo[key]
    # Hours of a memoised day are needed only while a 24-hour window still
    # starts inside that day.
    recent = now - DAY - 2 * HOUR
    for hour in [h for h in _hour_memo if h < recent and _floor(h, DAY) in _day_memo]:
        del _hour_memo[hour]


def _window_summaries(since: datetime, now: datetime) -> list[_Summary]:
    """Summaries covering [since, now]: memoised closed days and hours, the open hour from the database.

    `since` is an hour start. Whole closed UTC days inside the range come from
    the day memo, other closed hours from the hour memo.
    """
    closed_until = _floor(now - CLOSE_GRACE, HOUR)  # hours before this one are final
    parts: list[_Summary] = []
    with _memo_lock:
        _forget(now)
        moment = since
        while moment < closed_until:
            day = _floor(moment, DAY)
            if moment == day and day + DAY <= closed_until:
                parts.append(_day_summary(day))
                moment = day + DAY
            else:
                parts.append(_hour_summary(moment))
                moment += HOUR
    # Still being written: read fresh on every view (at most about an hour of rows).
    parts.append(_summary_from_db(closed_until, now + timedelta(seconds=1), HOUR_TOP_K))
    return parts


def dashboard_memo_clear() -> None:
    """Forget memoised summaries (tests; after rewriting old rollup rows)."""
    with _memo_lock:
        _hour_memo.clear()
        _day_memo.clear()


def _top_n(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]


def dashboard_stats(window: str, now: datetime | None = None) -> DashboardStats:
    """Totals, chart and top lists for the last `window` (a key of CHART_STEPS), from rollups only."""
    now = now or timezone.now()
    step, buckets = CHART_STEPS[window]
    # The chart ends with the bucket holding `now`, so the newest minute shows up.
    chart_start = _floor(now, step) - step * (buckets - 1)
    hourly_since = _floor(chart_start, HOUR)
    parts = _window_summaries(hourly_since, now)

    by_status: dict[str, int] = {}
    points = [ChartPoint(chart_start + step * i, 0, 0, 0) for i in range(buckets)]
    step_s = step.total_seconds()
    for part in parts:
        for bucket, status, count in part.minutes:
            if bucket < chart_start:
                continue
            by_status[status] = by_status.get(status, 0) + count
            index = int((bucket - chart_start).total_seconds() // step_s)
            if index < buckets:
                point = points[index]
                if status == "blocked":
                    point.blocked += count
                elif status == "cached":
                    point.cached += count
                else:
                    point.allowed += count

    domains: dict[str, int] = {}
    blocked: dict[str, int] = {}
    clients: dict[str, int] = {}
    for part in parts:
        _add(domains, part.domains)
        _add(blocked, part.blocked)
        _add(clients, part.clients)

    return DashboardStats(
        window=window,
        start=chart_start,
        end=now,
        total=sum(by_status.values()),
        blocked=by_status.get("blocked", 0),
        cached=by_status.get("cached", 0),
        by_status=by_status,
        clients=len(clients),
        chart=points,
        chart_step=step,
        top_domains=_top_n(domains),
        top_blocked=_top_n(blocked),
        top_clients=_top_n(clients),
        hourly_since=hourly_since,
    )
