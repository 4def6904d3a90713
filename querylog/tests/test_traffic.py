"""How much of the last day's traffic a block rule covers, read from the rollups."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dnsengine.guardrails import covers_pattern
from querylog.models import DomainRollup, QueryRollup
from querylog.traffic import recent_traffic_of_domain, recent_traffic_of_rule

pytestmark = pytest.mark.django_db


def seed(counts: dict[str, int], *, hours_ago: int = 1, status: str = "forwarded") -> None:
    """Rollups as the writers leave them: per hour and name, and per minute for the total."""
    now = timezone.now()
    hour = (now - timedelta(hours=hours_ago)).replace(minute=0, second=0, microsecond=0)
    DomainRollup.objects.bulk_create(
        [DomainRollup(bucket=hour, domain=d, status=status, count=n) for d, n in counts.items()]
    )
    QueryRollup.objects.create(bucket=hour, status=status, count=sum(counts.values()))


def test_a_domain_covers_its_own_queries_and_those_below_it_whatever_the_labels():
    seed({"doubleclick.net": 10, "x=1.doubleclick.net": 5, r"\195\169.doubleclick.net": 1, "example.com": 84})
    seed({"doubleclick.net": 3}, status="blocked")
    traffic = recent_traffic_of_domain("doubleclick.net")
    assert (traffic.queries, traffic.matched_queries, traffic.matched_names) == (103, 19, 3)
    assert traffic.share == pytest.approx(100 * 19 / 103)


def test_a_lookalike_name_is_not_below_the_domain():
    seed({"notdoubleclick.net": 7, "doubleclick.net.evil": 2, "doubleclick_net": 1})
    traffic = recent_traffic_of_domain("doubleclick.net")
    assert (traffic.matched_queries, traffic.matched_names) == (0, 0)


def test_like_wildcards_in_names_are_literal():
    seed({"x.axb.example": 5, "x.a_b.example": 3, "a%.example": 7})
    assert recent_traffic_of_domain("a_b.example").matched_queries == 3
    assert recent_traffic_of_domain("example").matched_queries == 15


def test_only_the_last_24_hours_count():
    seed({"doubleclick.net": 10})
    seed({"doubleclick.net": 1000}, hours_ago=30)
    traffic = recent_traffic_of_domain("doubleclick.net")
    assert (traffic.queries, traffic.matched_queries) == (10, 10)


def test_a_pattern_is_tried_against_every_name_seen_with_the_engines_matcher():
    seed({"ads1.example.com": 4, "ads2.example.com": 6, "example.com": 10, "www.example.org": 80})
    traffic = recent_traffic_of_rule(covers_pattern("wildcard", "ads*.example.com"))
    assert (traffic.queries, traffic.matched_queries, traffic.matched_names) == (100, 10, 2)
    assert not traffic.partial
    regex = recent_traffic_of_rule(covers_pattern("regex", r"example\.(com|org)$"))
    assert (regex.matched_queries, regex.matched_names) == (100, 4)


def test_a_pattern_tries_only_the_busiest_names_and_says_so():
    seed({f"n{i}.example.com": 100 - i for i in range(10)})
    traffic = recent_traffic_of_rule(covers_pattern("wildcard", "*.example.com"), max_names=3)
    assert (traffic.matched_names, traffic.matched_queries) == (3, 100 + 99 + 98)
    assert (traffic.names_tried, traffic.names_seen) == (3, 10)
    assert traffic.partial


def test_no_traffic_is_zero_not_an_error():
    traffic = recent_traffic_of_domain("doubleclick.net")
    assert (traffic.queries, traffic.matched_queries, traffic.share) == (0, 0, 0.0)
