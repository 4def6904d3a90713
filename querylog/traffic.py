"""Reads for the blocking guard rails: how much of the last day's traffic a block rule covers.

From the rollups, as the dashboard reads them: QueryRollup gives the day's
total, DomainRollup (queries per hour, name and status) the names and their
counts. A domain rule is one aggregate in the database; a wildcard or regex
rule is tried in Python, with the engine's own matcher, against the busiest
names seen, at most RULE_NAMES_MAX of them, so the cost stays bounded however
many names a busy network looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from dnsengine.guardrails import RecentTraffic
from querylog.models import DomainRollup, QueryRollup

WINDOW_HOURS = 24
# Distinct names a wildcard or regex is tried against, busiest first. A day of a
# busy network has a few hundred thousand; the busiest carry nearly all queries,
# so the share a pattern covers is still right to a fraction of a percent.
RULE_NAMES_MAX = 50_000


def _since(now: datetime | None) -> datetime:
    """The start of the window: the hour that holds `now` minus 24 h, as DomainRollup buckets are hours."""
    start = (now or timezone.now()) - timedelta(hours=WINDOW_HOURS)
    return start.replace(minute=0, second=0, microsecond=0)


def _total(since: datetime) -> int:
    return QueryRollup.objects.filter(bucket__gte=since).aggregate(n=Sum("count"))["n"] or 0


def recent_traffic_of_domain(name: str, now: datetime | None = None) -> RecentTraffic:
    """Queries and distinct names of the last 24 h at or below `name` (a normalised domain)."""
    since = _since(now)
    rows = DomainRollup.objects.filter(bucket__gte=since).filter(Q(domain=name) | Q(domain__endswith="." + name))
    figures = rows.aggregate(queries=Sum("count"), names=Count("domain", distinct=True))
    return RecentTraffic(
        queries=_total(since),
        matched_queries=figures["queries"] or 0,
        matched_names=figures["names"] or 0,
        hours=WINDOW_HOURS,
    )


def recent_traffic_of_rule(
    covers: Callable[[str], bool], now: datetime | None = None, max_names: int = RULE_NAMES_MAX
) -> RecentTraffic:
    """Queries and distinct names of the last 24 h that `covers` (a rule's matcher) says yes to."""
    since = _since(now)
    per_name = (
        DomainRollup.objects.filter(bucket__gte=since)
        .values("domain")
        .annotate(n=Sum("count"))
        .order_by("-n")
        .values_list("domain", "n")
    )
    matched_queries = matched_names = tried = 0
    for domain, count in per_name[:max_names].iterator(chunk_size=5000):
        tried += 1
        if covers(domain):
            matched_queries += count
            matched_names += 1
    seen = tried
    if tried == max_names:
        # Cut short: count what was left out, so the sentence can say so.
        seen = DomainRollup.objects.filter(bucket__gte=since).aggregate(n=Count("domain", distinct=True))["n"] or 0
    return RecentTraffic(
        queries=_total(since),
        matched_queries=matched_queries,
        matched_names=matched_names,
        hours=WINDOW_HOURS,
        names_seen=seen,
        names_tried=tried,
    )
