from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gloryhole_site.tests.factories import make_query
from querylog.models import ClientRollup, DomainRollup, QueryRollup
from querylog.selectors import dashboard_memo_clear, dashboard_stats

URL = reverse("querylog-dashboard")


def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def add(moment: datetime, status: str, count: int, domain: str = "example.com", client: str = "192.0.2.1") -> None:
    """What the query-log writer adds for `count` queries at `moment`."""
    q, _ = QueryRollup.objects.get_or_create(bucket=minute(moment), status=status)
    q.count += count
    q.save()
    d, _ = DomainRollup.objects.get_or_create(bucket=hour(moment), domain=domain, status=status)
    d.count += count
    d.save()
    c, _ = ClientRollup.objects.get_or_create(bucket=hour(moment), client=client)
    c.count += count
    c.save()


@pytest.mark.django_db
def test_it_redirects_anonymous_users_to_login(web):
    assert web.get(URL)["Location"].startswith(reverse("login"))


def test_it_counts_totals_shares_and_clients_from_the_rollups(viewer_web):
    now = timezone.now()
    add(now - timedelta(minutes=5), "forwarded", 60, "example.com", "192.0.2.1")
    add(now - timedelta(minutes=5), "blocked", 30, "ads.example.net", "192.0.2.2")
    add(now - timedelta(minutes=4), "cached", 10, "example.com", "192.0.2.1")
    add(now - timedelta(days=3), "blocked", 999, "old.example.net", "192.0.2.9")  # outside 24 h
    response = viewer_web.get(URL, {"window": "24h"})
    stats = response.context["stats"]
    assert (stats.total, stats.blocked, stats.cached) == (100, 30, 10)
    assert stats.blocked_pct == pytest.approx(30.0)
    assert stats.cached_pct == pytest.approx(10.0)
    assert stats.clients == 2
    assert stats.per_client == pytest.approx(50.0)
    assert stats.top_domains == [("example.com", 70), ("ads.example.net", 30)]
    assert stats.top_blocked == [("ads.example.net", 30)]
    assert stats.top_clients == [("192.0.2.1", 70), ("192.0.2.2", 30)]
    html = response.content.decode()
    assert "30.0 %" in html
    assert "ads.example.net" in html


def test_the_seven_day_window_includes_older_buckets(viewer_web):
    now = timezone.now()
    add(now - timedelta(days=3), "blocked", 7)
    add(now - timedelta(days=9), "blocked", 1000)
    stats = viewer_web.get(URL, {"window": "7d"}).context["stats"]
    assert stats.total == 7


def test_the_chart_is_server_side_svg_split_into_three_series(viewer_web):
    now = timezone.now()
    add(now - timedelta(minutes=3), "forwarded", 5)
    add(now - timedelta(minutes=3), "local", 1)
    add(now - timedelta(minutes=3), "blocked", 4)
    add(now - timedelta(minutes=2), "cached", 2)
    response = viewer_web.get(URL, {"window": "1h"})
    points = response.context["stats"].chart
    assert len(points) == 60
    assert sum(p.allowed for p in points) == 6  # forwarded + local
    assert sum(p.blocked for p in points) == 4
    assert sum(p.cached for p in points) == 2
    assert points[-1].start == minute(now)
    html = response.content.decode()
    assert "<svg" in html
    assert html.count('class="s-allowed"') >= 1
    assert html.count('class="s-blocked" x=') == 1
    assert html.count('class="s-cached" x=') == 1


def test_the_dashboard_never_reads_the_query_log(viewer_web):
    make_query("example.com")
    add(timezone.now(), "forwarded", 1)
    with CaptureQueriesContext(connection) as queries:
        response = viewer_web.get(URL, {"window": "7d"})
    assert response.status_code == 200
    assert not [q["sql"] for q in queries if "querylog_querylog" in q["sql"]]


def test_an_unknown_window_falls_back_to_a_day_with_a_message(viewer_web):
    response = viewer_web.get(URL, {"window": "10y"})
    assert response.status_code == 200
    assert response.context["window"] == "24h"
    assert b"Unknown window" in response.content


def test_an_empty_log_draws_an_empty_chart(viewer_web):
    response = viewer_web.get(URL)
    assert response.status_code == 200
    assert b"No queries in this window" in response.content


@pytest.mark.django_db
def test_buckets_land_in_the_right_chart_slot():
    now = datetime(2026, 1, 10, 12, 7, 30, tzinfo=UTC)
    add(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), "blocked", 3)  # inside the 12:00 15-minute slot
    add(datetime(2026, 1, 10, 11, 59, tzinfo=UTC), "blocked", 2)  # the slot before
    stats = dashboard_stats("24h", now=now)
    assert stats.chart[-1].start == datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert (stats.chart[-1].blocked, stats.chart[-2].blocked) == (3, 2)


@pytest.mark.django_db
def test_memoised_closed_hours_and_days_give_the_same_figures_as_a_fresh_read():
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    for hours_ago in range(0, 24 * 6, 5):
        moment = now - timedelta(hours=hours_ago, minutes=7)
        add(moment, "forwarded", 10 + hours_ago % 7, f"site{hours_ago % 4}.example.com", f"192.0.2.{hours_ago % 3}")
        add(moment, "blocked", 1 + hours_ago % 5, f"ads{hours_ago % 3}.example.net", "192.0.2.50")
    first = dashboard_stats("7d", now=now)  # fills the memo with closed hours and days
    second = dashboard_stats("7d", now=now)
    dashboard_memo_clear()
    fresh = dashboard_stats("7d", now=now)
    for stats in (second, fresh):
        assert (stats.total, stats.blocked, stats.clients) == (first.total, first.blocked, first.clients)
        assert stats.top_domains == first.top_domains
        assert stats.top_blocked == first.top_blocked
        assert stats.top_clients == first.top_clients
        assert [p.total for p in stats.chart] == [p.total for p in first.chart]
    # And they agree with a plain sum over the rollup tables.
    assert first.total == sum(QueryRollup.objects.filter(bucket__gte=first.start).values_list("count", flat=True))
    expected_top = {}
    for domain, count in DomainRollup.objects.filter(bucket__gte=first.hourly_since).values_list("domain", "count"):
        expected_top[domain] = expected_top.get(domain, 0) + count
    assert dict(first.top_domains) == dict(sorted(expected_top.items(), key=lambda kv: -kv[1])[:10])


@pytest.mark.django_db
def test_the_open_hour_is_read_fresh_on_every_view():
    now = timezone.now()
    add(now, "blocked", 2)
    assert dashboard_stats("1h").blocked == 2
    add(now, "blocked", 3)
    assert dashboard_stats("1h").blocked == 5


@pytest.mark.django_db
def test_after_the_first_view_only_the_open_hour_is_read():
    now = timezone.now()
    for hours_ago in range(0, 24 * 7, 3):
        add(now - timedelta(hours=hours_ago), "forwarded", 1)
    dashboard_stats("7d")
    dashboard_stats("24h")
    with CaptureQueriesContext(connection) as queries:
        week = dashboard_stats("7d")
        day = dashboard_stats("24h")
    # Four reads per view (minutes, domains, blocked domains, clients), all of the open hour.
    assert len(queries) == 8
    assert week.total >= day.total > 0
