from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gloryhole_site.testing.factories import make_query
from gloryhole_site.testing.querylog import make_entry
from querylog.models import ClientRollup, DomainRollup, QueryRollup, RollupSummary
from querylog.rollups import rollup_apply
from querylog.selectors import (
    HOUR,
    _period_from_db,
    _store_summary,
    dashboard_memo_clear,
    dashboard_stats,
    summaries_build,
)

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


def seed_week(now: datetime, days: int = 7) -> None:
    """Traffic every 5 hours over the last `days` days: two sites, ads, a few clients."""
    for hours_ago in range(0, 24 * days, 5):
        moment = now - timedelta(hours=hours_ago, minutes=7)
        add(moment, "forwarded", 10 + hours_ago % 7, f"site{hours_ago % 4}.example.com", f"192.0.2.{hours_ago % 3}")
        add(moment, "blocked", 1 + hours_ago % 5, f"ads{hours_ago % 3}.example.net", "192.0.2.50")


def same_figures(a, b) -> bool:
    return (
        (a.total, a.blocked, a.cached, a.clients, a.by_status) == (b.total, b.blocked, b.cached, b.clients, b.by_status)
        and (a.top_domains, a.top_blocked, a.top_clients) == (b.top_domains, b.top_blocked, b.top_clients)
        and [(p.allowed, p.cached, p.blocked) for p in a.chart] == [(p.allowed, p.cached, p.blocked) for p in b.chart]
    )


@pytest.mark.django_db
def test_memoised_closed_hours_and_days_give_the_same_figures_as_a_fresh_read():
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    seed_week(now, days=6)
    first = dashboard_stats("7d", now=now)  # fills the memo with closed hours and days
    second = dashboard_stats("7d", now=now)
    dashboard_memo_clear()
    fresh = dashboard_stats("7d", now=now)
    for stats in (second, fresh):
        assert same_figures(stats, first)
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
    # Four reads per view (minutes, domains, blocked domains, clients), all of the open hour,
    # and two grouped reads of the answer rollups (query types, upstream answer times).
    assert len(queries) == 12
    assert week.total >= day.total > 0


def stored_periods() -> set[tuple[datetime, int]]:
    return set(RollupSummary.objects.values_list("start", "hours"))


@pytest.mark.django_db
def test_a_fresh_process_reads_final_hours_and_days_from_their_stored_summaries():
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    seed_week(now)
    first = dashboard_stats("7d", now=now)
    # The window starts on 3 March at 10:00: the rest of that day in hours, 4 to 9
    # March as days, then 10 March in hours. All are stored but 08:00, which ended
    # less than SUMMARY_AFTER ago, and the open hour.
    hours = [datetime(2026, 3, 3, h, tzinfo=UTC) for h in range(10, 24)]
    hours += [datetime(2026, 3, 10, h, tzinfo=UTC) for h in range(8)]
    days = [datetime(2026, 3, d, tzinfo=UTC) for d in range(4, 10)]
    assert stored_periods() == {(h, 1) for h in hours} | {(d, 24) for d in days}

    # A new web worker: nothing memoised, and the stored periods' rollups are not
    # read again (deleted here, so reading them would change every figure).
    dashboard_memo_clear()
    for model in (QueryRollup, DomainRollup, ClientRollup):
        model.objects.filter(bucket__gte=hours[0], bucket__lt=datetime(2026, 3, 10, 8, tzinfo=UTC)).delete()
    with CaptureQueriesContext(connection) as queries:
        fresh = dashboard_stats("7d", now=now)
    assert fresh.total == first.total > 0
    assert same_figures(fresh, first)
    # One read of all stored summaries, four of the 08:00 hour, four of the open hour, two of
    # the answer rollups.
    assert len(queries) == 11


@pytest.mark.django_db
def test_a_period_is_stored_only_an_hour_after_it_ended():
    now = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)  # 9 March ended half an hour ago
    seed_week(now)
    first = dashboard_stats("7d", now=now)
    assert (datetime(2026, 3, 9, tzinfo=UTC), 24) not in stored_periods()
    assert (datetime(2026, 3, 8, tzinfo=UTC), 24) in stored_periods()
    # A late write to 9 March (a writer retrying after an outage) still shows.
    add(datetime(2026, 3, 9, 23, 59, tzinfo=UTC), "blocked", 7, "late.example.net")
    dashboard_memo_clear()
    assert dashboard_stats("7d", now=now).blocked == first.blocked + 7


@pytest.mark.django_db
def test_building_the_summaries_stores_each_final_period_with_queries_once():
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    seed_week(now)  # from 3 March 09:23 on, every 5 hours
    buckets = set(QueryRollup.objects.values_list("bucket", flat=True))
    # Hours: the last BUILD_HOURS_BACK that ended at least SUMMARY_AFTER ago (to 07:00).
    last_hour = datetime(2026, 3, 10, 7, tzinfo=UTC)
    hours = {b.replace(minute=0) for b in buckets if last_hour - timedelta(hours=47) <= b < last_hour + HOUR}
    # Days: those a 7-day window shows whole (from 4 March); 10 March is not over.
    days = {datetime(2026, 3, d, tzinfo=UTC) for d in range(4, 10)}
    assert summaries_build(now) == len(hours) + len(days)
    assert summaries_build(now) == 0
    assert stored_periods() == {(h, 1) for h in hours} | {(d, 24) for d in days}
    stored = dashboard_stats("7d", now=now)
    RollupSummary.objects.all().delete()
    dashboard_memo_clear()
    assert same_figures(dashboard_stats("7d", now=now), stored)


@pytest.mark.django_db
def test_when_a_summary_cannot_be_stored_the_page_is_still_right(monkeypatch, caplog):
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    seed_week(now)
    expected = dashboard_stats("7d", now=now)
    RollupSummary.objects.all().delete()
    dashboard_memo_clear()

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(RollupSummary.objects, "bulk_create", locked)
    assert same_figures(dashboard_stats("7d", now=now), expected)
    assert RollupSummary.objects.count() == 0
    # One attempt per view: after the first failure the rest wait for a later view or the engine.
    warnings = [r.getMessage() for r in caplog.records if "could not store" in r.getMessage()]
    assert warnings == ["could not store the dashboard summary of 2026-03-03 10:00:00+00:00 +1h: database is locked"]


@pytest.mark.django_db
def test_a_late_batch_deletes_the_stored_summaries_of_the_periods_it_adds_to():
    now = time.time()
    at_30h, at_40h = now - 30 * 3600, now - 40 * 3600
    rollup_apply([make_entry(i, at=at_30h, status="forwarded") for i in range(5)])
    rollup_apply([make_entry(i, at=at_40h, status="forwarded") for i in range(3)])
    moment = datetime.fromtimestamp(now, UTC)
    hour_30, hour_40 = (hour(datetime.fromtimestamp(t, UTC)) for t in (at_30h, at_40h))
    day_30 = hour_30.replace(hour=0)
    summaries_build(moment)
    assert {(hour_30, 1), (hour_40, 1), (day_30, 24)} <= stored_periods()
    before = dashboard_stats("7d", now=moment).total

    # A batch of fresh queries leaves every summary alone...
    rollup_apply([make_entry(i, status="blocked") for i in range(4)])
    assert {(hour_30, 1), (hour_40, 1), (day_30, 24)} <= stored_periods()
    # ...a batch that was held back for 30 hours (an outage) drops what it changes.
    rollup_apply([make_entry(i, at=at_30h + 1, status="blocked") for i in range(2)])
    assert (hour_30, 1) not in stored_periods()
    assert (day_30, 24) not in stored_periods()
    assert (hour_40, 1) in stored_periods()
    dashboard_memo_clear()  # a fresh worker (this process's memo is not shared)
    assert dashboard_stats("7d", now=moment).total == before + 4 + 2  # the fresh batch and the late one


@pytest.mark.django_db
def test_two_processes_storing_the_same_period_leave_one_row():
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    seed_week(now)
    assert summaries_build(now) > 0
    rows = RollupSummary.objects.count()
    RollupSummary.objects.filter(start=datetime(2026, 3, 5, tzinfo=UTC)).update(domains={"kept.example": 1})
    dashboard_memo_clear()
    # Another worker that grouped the same day on its own stores it too: ignored, no error.
    assert _store_summary(
        datetime(2026, 3, 5, tzinfo=UTC),
        timedelta(days=1),
        _period_from_db(datetime(2026, 3, 5, tzinfo=UTC), timedelta(days=1)),
    )
    assert RollupSummary.objects.count() == rows
    assert RollupSummary.objects.get(start=datetime(2026, 3, 5, tzinfo=UTC), hours=24).domains == {"kept.example": 1}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's single write lock")
@pytest.mark.django_db(transaction=True)
def test_a_view_does_not_wait_out_the_busy_timeout_when_another_process_holds_the_write_lock(caplog):
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    seed_week(now)
    expected = dashboard_stats("7d", now=now)
    RollupSummary.objects.all().delete()
    dashboard_memo_clear()
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a long blocklist import in another process, say
    try:
        started = time.monotonic()
        stats = dashboard_stats("7d", now=now)
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert same_figures(stats, expected)
    assert RollupSummary.objects.count() == 0
    # The connection's own busy timeout is 20 s; the view gives up on storing after one short wait.
    assert waited < 5
    assert sum("could not store" in r.getMessage() for r in caplog.records) == 1
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 20000  # put back for everything else on this connection
