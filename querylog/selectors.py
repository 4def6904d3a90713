"""Reads for the web pages and the JSON API: query history and dashboard figures.

The history reads QueryLog with keyset pagination; the dashboard reads only the
rollup tables, because a count over millions of QueryLog rows on every page
view is exactly what the rollups exist to avoid.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.db.models import Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from dnsengine.models import Client, ClientGroup
from querylog.db import sqlite_write_lock
from querylog.history import HistoryFilter, cursor_encode
from querylog.models import AnswerRollup, ClientRollup, DomainRollup, QueryLog, QueryRollup, RollupSummary
from querylog.rollups import SUMMARY_AFTER, time_bucket_bounds

log = logging.getLogger(__name__)

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
    "client_name",
    "client_group",
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
    if f.client_name:
        qs = qs.filter(client_name=f.client_name)
    if f.client_group:
        qs = qs.filter(client_group=f.client_group)
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
LONGEST_WINDOW = max(step * buckets for step, buckets in CHART_STEPS.values())
# How long a page view waits for SQLite's write lock to store a summary.
STORE_WAIT = 0.2
# A closed hour's or day's summary is stored in the database (RollupSummary) once
# it is SUMMARY_AFTER (an hour) past; a later write to it deletes the row
# (querylog.rollups.rollup_write). summaries_build() fills in missing hours this
# far back, so an engine that was down for a while catches up on its next run.
BUILD_HOURS_BACK = 48


# Query types shown by name on the dashboard; the rest are added up as "other".
QTYPES_SHOWN = 8
UPSTREAMS_SHOWN = 10


@dataclass(slots=True)
class ChartPoint:
    start: datetime
    allowed: int
    blocked: int
    cached: int

    @property
    def total(self) -> int:
        return self.allowed + self.blocked + self.cached

    @property
    def blocked_share(self) -> float | None:
        """Blocked queries as a fraction of the bucket's, None for an empty bucket."""
        total = self.allowed + self.blocked + self.cached
        return self.blocked / total if total else None


@dataclass(slots=True)
class Share:
    """One query type's part of the window's queries."""

    name: str
    count: int
    pct: float


@dataclass(slots=True)
class UpstreamShare:
    """One upstream's part of the forwarded queries, and how fast it answered them."""

    upstream: str
    count: int
    pct: float
    median_us: int | None
    p95_us: int | None


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
    qtypes: list[Share] = field(default_factory=list)  # hourly too, like the top lists
    upstreams: list[UpstreamShare] = field(default_factory=list)

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


def _period_summary(start: datetime, length: timedelta, stored: dict) -> tuple[_Summary, bool]:
    """A closed hour or day: memo, else its stored row (from `stored`), else the rollups.

    The flag says it was just grouped from the rollups (worth storing, if final).
    """
    memo = _day_memo if length == DAY else _hour_memo
    summary = memo.get(start)
    grouped = False
    if summary is None:
        row = stored.get((start, length))
        if row is not None:
            summary = _summary_from_row(row)
        else:
            summary = _period_from_db(start, length)
            grouped = True
        memo[start] = summary
    return summary, grouped


def _period_from_db(start: datetime, length: timedelta) -> _Summary:
    # One grouped read of a whole day is cheaper than 24 hourly ones (`make bench-web`).
    return _summary_from_db(start, start + length, DAY_TOP_K if length == DAY else HOUR_TOP_K)


def _stored_summaries(periods: list[tuple[datetime, timedelta]]) -> dict[tuple[datetime, timedelta], RollupSummary]:
    """The stored rows of these periods, in one query."""
    days = [start for start, length in periods if length == DAY]
    hours = [start for start, length in periods if length == HOUR]
    if not days and not hours:
        return {}
    rows = RollupSummary.objects.filter(Q(hours=24, start__in=days) | Q(hours=1, start__in=hours))
    return {(row.start, timedelta(hours=row.hours)): row for row in rows}


def _summary_from_row(row: RollupSummary) -> _Summary:
    start = row.start
    return _Summary(
        minutes=[(start + timedelta(seconds=offset), status, count) for offset, status, count in row.minutes],
        domains=row.domains,
        blocked=row.blocked,
        clients=row.clients,
    )


def _store_summary(start: datetime, length: timedelta, summary: _Summary, *, wait: bool = True) -> bool:
    """Save a final period's summary for every process; False if the database would not take it now.

    wait=False (a page view): on SQLite, give up after STORE_WAIT rather than the
    connection's busy timeout when another process holds the write lock (a long
    blocklist import), so the page does not hang; a later view or the engine stores it.
    """
    row = RollupSummary(
        start=start,
        hours=int(length / HOUR),
        minutes=[[int((bucket - start).total_seconds()), status, count] for bucket, status, count in summary.minutes],
        domains=summary.domains,
        blocked=summary.blocked,
        clients=summary.clients,
    )
    try:
        # The engine's writer threads queue on this lock in the engine process (None off SQLite).
        with sqlite_write_lock() or nullcontext(), _busy_timeout(None if wait else STORE_WAIT), transaction.atomic():
            # Another web worker or engine may store the same period at the same time.
            RollupSummary.objects.bulk_create([row], ignore_conflicts=True)
        return True
    except DatabaseError as exc:
        # Locked for longer than the busy timeout, or a read-only database: the
        # page is still right from the rollups; a later view stores it.
        log.warning("could not store the dashboard summary of %s +%dh: %s", start, row.hours, exc)
        return False


@contextmanager
def _busy_timeout(seconds: float | None) -> Iterator[None]:
    """SQLite's busy timeout set to `seconds` for the block (nothing for None or other databases)."""
    if seconds is None or connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        before = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(before)}")


def summaries_build(now: datetime | None = None) -> int:
    """Store the summaries of final hours and days that have queries and none yet; how many were new.

    Covers the whole days the longest window can show and the last BUILD_HOURS_BACK
    hours. The engine's retention thread calls this, so a dashboard view rarely has
    to group rollups itself.
    """
    now = now or timezone.now()
    last_day = _floor(now - SUMMARY_AFTER, DAY) - DAY  # the newest day that is final
    first_day = _floor(now - LONGEST_WINDOW, DAY) + DAY  # the oldest day a window shows whole
    last_hour = _floor(now - SUMMARY_AFTER, HOUR) - HOUR
    periods = [(first_day + DAY * i, DAY) for i in range((last_day - first_day) // DAY + 1)]
    periods += [(last_hour - HOUR * i, HOUR) for i in range(BUILD_HOURS_BACK)]
    have = _stored_summaries(periods)
    built = 0
    for start, length in periods:
        if (start, length) in have:
            continue
        if not QueryRollup.objects.filter(bucket__gte=start, bucket__lt=start + length).exists():
            continue
        built += _store_summary(start, length, _period_from_db(start, length))
    return built


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

    `since` is an hour start. Whole closed UTC days inside the range are read as
    days, other closed hours as hours: from this process's memo, else from their
    stored RollupSummary rows (one query for all), else grouped from the rollups.
    """
    closed_until = _floor(now - CLOSE_GRACE, HOUR)  # hours before this one are final
    periods: list[tuple[datetime, timedelta]] = []
    moment = since
    while moment < closed_until:
        day = _floor(moment, DAY)
        length = DAY if moment == day and day + DAY <= closed_until else HOUR
        periods.append((moment, length))
        moment += length
    parts: list[_Summary] = []
    grouped: list[tuple[datetime, timedelta, _Summary]] = []
    with _memo_lock:
        _forget(now)
        missing = [p for p in periods if p[0] not in (_day_memo if p[1] == DAY else _hour_memo)]
        stored = _stored_summaries(missing)
        for start, length in periods:
            summary, fresh = _period_summary(start, length, stored)
            parts.append(summary)
            if fresh and start + length + SUMMARY_AFTER <= now:
                grouped.append((start, length, summary))
    # Stored outside the lock, so other views in this process need not wait on a write.
    for start, length, summary in grouped:
        if not _store_summary(start, length, summary, wait=False):
            break  # the database is busy: a later view, or the engine, stores the rest
    # Still being written: read fresh on every view (at most about an hour of rows).
    parts.append(_summary_from_db(closed_until, now + timedelta(seconds=1), HOUR_TOP_K))
    return parts


def dashboard_memo_clear() -> None:
    """Forget this process's memoised summaries (tests; after rewriting old rollup rows).

    Stored RollupSummary rows stay: delete those too (RollupSummary.objects.all().delete())
    after rewriting old rollups.
    """
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

    qtypes, upstreams = dashboard_answers(hourly_since)
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
        qtypes=qtypes,
        upstreams=upstreams,
    )


def answer_time_percentile(histogram: dict[int, int], fraction: float) -> int | None:
    """The answer time (µs) below which `fraction` of the counted answers fall, None without any.

    `histogram` maps querylog.rollups.time_bucket buckets to counts; the result is the
    middle of the bucket holding that rank, so it is within a quarter of the true value.
    """
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            low, high = time_bucket_bounds(bucket)
            return (low + high) // 2
    return None  # not reached: the last bucket brings seen to total


def qtype_shares(counts: dict[str, int], shown: int = QTYPES_SHOWN) -> list[Share]:
    """The busiest `shown` query types, then the rest as one "other" line; shares of the whole."""
    total = sum(counts.values())
    if not total:
        return []
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shares = [Share(name, n, 100.0 * n / total) for name, n in ordered[:shown]]
    rest = sum(n for _, n in ordered[shown:])
    if rest:
        shares.append(Share("other", rest, 100.0 * rest / total))
    return shares


def upstream_shares(histograms: dict[str, dict[int, int]], shown: int = UPSTREAMS_SHOWN) -> list[UpstreamShare]:
    """Per upstream: its share of the forwarded queries, median and 95th-percentile answer time."""
    counts = {upstream: sum(h.values()) for upstream, h in histograms.items()}
    total = sum(counts.values())
    if not total:
        return []
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:shown]
    return [
        UpstreamShare(
            upstream,
            n,
            100.0 * n / total,
            answer_time_percentile(histograms[upstream], 0.5),
            answer_time_percentile(histograms[upstream], 0.95),
        )
        for upstream, n in ordered
    ]


def dashboard_answers(since: datetime) -> tuple[list[Share], list[UpstreamShare]]:
    """Query types and upstreams of the hours from `since` on, from AnswerRollup (two grouped reads)."""
    rows = AnswerRollup.objects.filter(bucket__gte=since)
    qtypes = dict(rows.values("qtype").annotate(n=Sum("count")).values_list("qtype", "n"))
    histograms: dict[str, dict[int, int]] = {}
    timed = (
        rows.exclude(upstream="")
        .values("upstream", "time_bucket")
        .annotate(n=Sum("count"))
        .values_list("upstream", "time_bucket", "n")
    )
    for upstream, bucket, n in timed:
        histograms.setdefault(upstream, {})[bucket] = n
    return qtype_shares(qtypes), upstream_shares(histograms)


# --- Clients -------------------------------------------------------------------------------


@dataclass(slots=True)
class ClientActivity:
    """One client IP's traffic over a period, from the hourly ClientRollup rows."""

    client: str
    queries: int
    blocked: int
    last_hour: datetime  # the newest hour bucket it has queries in


@dataclass(slots=True)
class LastQuery:
    """What the newest logged query of a client says about it."""

    name: str
    group: str
    at: datetime | None


def client_activity(since: datetime) -> list[ClientActivity]:
    """Every client with queries in the hours from `since`'s hour on, busiest first (rollups only)."""
    rows = (
        ClientRollup.objects.filter(bucket__gte=_floor(since, HOUR))
        .values("client")
        .annotate(queries=Sum("count"), blocked_n=Sum("blocked"), last_hour=Max("bucket"))
        .order_by("-queries", "client")
    )
    return [ClientActivity(r["client"], r["queries"], r["blocked_n"], r["last_hour"]) for r in rows]


def client_last_queries(last_hours: dict[str, datetime]) -> dict[str, LastQuery]:
    """client IP -> the name, group and time of its newest logged query.

    One statement: it starts from the one ClientRollup row of each client's newest
    hour (`last_hours`, from client_activity) and reads each client's newest
    QueryLog row with a correlated subquery, a single seek into the (client,
    timestamp) index per client; no scan of QueryLog. Rollups without rows (the
    rows purged first) give blank values.
    """
    if not last_hours:
        return {}
    pick = Q()
    for client, hour in last_hours.items():
        pick |= Q(client=client, bucket=hour)
    # ClientRollup.client is text, QueryLog.client an address (inet on PostgreSQL).
    newest = QueryLog.objects.filter(
        client=Cast(OuterRef("client"), output_field=QueryLog._meta.get_field("client"))
    ).order_by("-timestamp")
    rows = (
        ClientRollup.objects.filter(pick)
        .annotate(
            last_name=Subquery(newest.values("client_name")[:1]),
            last_group=Subquery(newest.values("client_group")[:1]),
            last_at=Subquery(newest.values("timestamp")[:1]),
        )
        .values_list("client", "last_name", "last_group", "last_at")
    )
    return {client: LastQuery(name or "", group or "", at) for client, name, group, at in rows}


def client_names_for(clients: list[str]) -> dict[str, str]:
    """IP -> the name its Client row gives it, for the clients that have one.

    The dashboard reads rollups and configuration only, never QueryLog: a name
    known only from the log (a hosts file, PTR) shows on the clients page instead.
    """
    return dict(Client.objects.filter(ip__in=clients).values_list("ip", "name"))


def client_group_names() -> list[str]:
    return list(ClientGroup.objects.values_list("name", flat=True))
