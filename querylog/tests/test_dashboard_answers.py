"""The dashboard's query types, upstream shares and answer times, and the names on enabled lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dnsengine.models import Blocklist
from gloryhole_site.testing.querylog import make_entry
from querylog.models import AnswerRollup
from querylog.rollups import rollup_apply, rollup_rows, time_bucket, time_bucket_bounds
from querylog.selectors import answer_time_percentile, dashboard_stats, qtype_shares

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # an hour boundary
URL = reverse("querylog-dashboard")


def test_every_duration_lies_inside_its_time_bucket():
    for us in [0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 100, 999, 1000, 1023, 1024, 1536, 25_000, 2**31 - 1]:
        low, high = time_bucket_bounds(time_bucket(us))
        assert low <= us < high, us


def test_time_buckets_are_half_octaves():
    assert [time_bucket_bounds(k) for k in (1, 2, 3, 4, 5, 6)] == [(0, 2), (2, 3), (3, 4), (4, 6), (6, 8), (8, 12)]


def test_the_writer_counts_answers_per_hour_qtype_upstream_and_time_bucket():
    entries = [
        make_entry(at=T0 + 1, qtype="A", status="forwarded", upstream="192.0.2.53:53", duration_us=1000),
        make_entry(at=T0 + 2, qtype="A", status="forwarded", upstream="192.0.2.53:53", duration_us=1010),
        make_entry(at=T0 + 3, qtype="AAAA", status="forwarded", upstream="192.0.2.54:53", duration_us=30_000),
        make_entry(at=T0 + 4, qtype="A", status="blocked", upstream="", duration_us=50),
        make_entry(at=T0 + 3600, qtype="HTTPS", status="cached", upstream="", duration_us=40),
    ]
    rows = rollup_rows(entries)
    assert rows.answers == {
        (T0, "A", "192.0.2.53:53", time_bucket(1000)): 2,
        (T0, "AAAA", "192.0.2.54:53", time_bucket(30_000)): 1,
        (T0, "A", "", 0): 1,
        (T0 + 3600, "HTTPS", "", 0): 1,
    }
    # Levels 1 and 2 drop domains (and clients), not query types and upstreams.
    assert rollup_rows(entries, with_domains=False, with_clients=False).answers == rows.answers


@pytest.mark.django_db(transaction=True)
def test_answer_counts_are_added_on_conflict_and_long_values_are_cut_to_their_columns():
    long_upstream = "https://dns.example.net/" + "q" * 80
    batch = [make_entry(at=T0 + 1, qtype="A", upstream="192.0.2.53:53", duration_us=1000)] * 2
    batch += [make_entry(at=T0 + 2, qtype="TYPE65280999", upstream=long_upstream + "a", duration_us=5)]
    batch += [make_entry(at=T0 + 3, qtype="TYPE65280999", upstream=long_upstream + "b", duration_us=5)]
    rollup_apply(batch)
    rollup_apply(batch[:1])
    counts = {(q, u): n for q, u, n in AnswerRollup.objects.values_list("qtype", "upstream", "count")}
    assert counts[("A", "192.0.2.53:53")] == 3
    assert counts[("TYPE652809", long_upstream[:64])] == 2


def test_percentiles_come_from_the_bucket_holding_the_rank():
    fast, slow = time_bucket(1000), time_bucket(40_000)
    histogram = {fast: 90, slow: 10}
    assert time_bucket_bounds(fast)[0] <= answer_time_percentile(histogram, 0.5) < time_bucket_bounds(fast)[1]
    assert time_bucket_bounds(fast)[0] <= answer_time_percentile(histogram, 0.9) < time_bucket_bounds(fast)[1]
    assert time_bucket_bounds(slow)[0] <= answer_time_percentile(histogram, 0.95) < time_bucket_bounds(slow)[1]
    assert answer_time_percentile({}, 0.5) is None


def test_a_percentile_is_the_answer_time_of_its_rank_counted_from_the_fastest():
    fast, slow = time_bucket(1000), time_bucket(40_000)
    in_fast, in_slow = sum(time_bucket_bounds(fast)) // 2, sum(time_bucket_bounds(slow)) // 2
    assert answer_time_percentile({fast: 50, slow: 50}, 0.5) == in_fast  # the 50th of 100
    assert answer_time_percentile({fast: 50, slow: 50}, 0.51) == in_slow  # the 51st
    assert answer_time_percentile({fast: 1, slow: 1}, 1.0) == in_slow
    assert answer_time_percentile({slow: 1}, 0.0) == in_slow


def test_query_types_beyond_the_shown_ones_are_added_up_as_other():
    shares = qtype_shares({"A": 60, "AAAA": 30, "MX": 6, "TXT": 4}, shown=2)
    assert [(s.name, s.count, s.pct) for s in shares] == [("A", 60, 60.0), ("AAAA", 30, 30.0), ("other", 10, 10.0)]
    assert qtype_shares({}) == []


@pytest.mark.django_db
def test_the_dashboard_shows_query_types_and_each_upstreams_share_and_answer_times(viewer_web):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for qtype, upstream, us, count in (
        ("A", "192.0.2.53:53", 2_000, 90),
        ("A", "192.0.2.53:53", 80_000, 10),
        ("AAAA", "tls://dns.example.net:853", 20_000, 100),
        ("HTTPS", "", 0, 200),
    ):
        bucket = time_bucket(us) if upstream else 0
        AnswerRollup.objects.create(bucket=hour, qtype=qtype, upstream=upstream, time_bucket=bucket, count=count)
    AnswerRollup.objects.create(bucket=hour - timedelta(days=3), qtype="MX", upstream="", count=999)  # too old

    stats = viewer_web.get(URL, {"window": "24h"}).context["stats"]

    assert [(s.name, s.count, s.pct) for s in stats.qtypes] == [
        ("HTTPS", 200, 50.0),
        ("A", 100, 25.0),
        ("AAAA", 100, 25.0),
    ]
    first, second = stats.upstreams
    assert (first.upstream, first.count, first.pct) == ("192.0.2.53:53", 100, 50.0)
    assert 1_500 <= first.median_us <= 3_000
    assert 60_000 <= first.p95_us <= 100_000  # the slowest tenth holds the 95th percentile
    assert (second.upstream, second.pct) == ("tls://dns.example.net:853", 50.0)
    html = viewer_web.get(URL, {"window": "24h"}).content.decode()
    assert 'id="query-types"' in html and "HTTPS" in html
    assert "dns.example.net" in html


@pytest.mark.django_db
def test_query_types_and_upstreams_follow_the_window():
    now = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    AnswerRollup.objects.create(bucket=now.replace(minute=0) - timedelta(hours=5), qtype="MX", upstream="", count=7)
    assert dashboard_stats("1h", now=now).qtypes == []
    assert [s.name for s in dashboard_stats("24h", now=now).qtypes] == ["MX"]


@pytest.mark.django_db
def test_the_dashboard_counts_names_on_enabled_lists_only(viewer_web):
    Blocklist.objects.all().delete()
    Blocklist.objects.create(name="ads", domain_count=85_000)
    Blocklist.objects.create(name="social", domain_count=1_200)
    Blocklist.objects.create(name="off", domain_count=5_000, enabled=False)
    response = viewer_web.get(URL)
    assert response.context["list_names"] == 86_200
    assert '<span class="value" id="stat-list-names">86,200</span>' in response.content.decode()


@pytest.mark.django_db
def test_the_dashboard_shows_the_pause_with_its_time_left_without_javascript(viewer_web):
    from dnsengine.services.pause import blocking_pause

    blocking_pause(60, by="staff")
    html = viewer_web.get(URL).content.decode()
    assert "Blocking is paused" in html
    assert 'class="countdown" data-until="' in html
    assert "minutes left</span>" in html
