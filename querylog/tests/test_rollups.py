from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gloryhole_site.testing.querylog import make_entry
from querylog import rollups
from querylog.logger.writer import QueryLogWriter
from querylog.models import ClientRollup, DomainRollup, QueryLog, QueryRollup
from querylog.rollups import rollup_apply, rollup_rows

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # an hour boundary


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_it_counts_per_minute_and_status_and_per_hour_domain_and_client():
    entries = [
        make_entry(at=T0 + 5, status="blocked", domain="ads.example", client="192.0.2.1"),
        make_entry(at=T0 + 59, status="blocked", domain="ads.example", client="192.0.2.1"),
        make_entry(at=T0 + 60, status="forwarded", domain="www.example", client="192.0.2.2"),
        make_entry(at=T0 + 3599, status="blocked", domain="ads.example", client="192.0.2.1"),
        make_entry(at=T0 + 3600, status="blocked", domain="ads.example", client="192.0.2.1"),
    ]

    rows = rollup_rows(entries)

    assert rows.minutes == {
        (T0, "blocked"): 2,
        (T0 + 60, "forwarded"): 1,
        (T0 + 3540, "blocked"): 1,
        (T0 + 3600, "blocked"): 1,
    }
    assert rows.domains == {
        (T0, "ads.example", "blocked"): 3,
        (T0, "www.example", "forwarded"): 1,
        (T0 + 3600, "ads.example", "blocked"): 1,
    }
    assert rows.clients == {(T0, "192.0.2.1"): 3, (T0, "192.0.2.2"): 1, (T0 + 3600, "192.0.2.1"): 1}


def test_an_entry_rounded_into_the_next_minute_is_counted_there():
    # QueryLog stores this as hh:01:00.000000 (microsecond rounding), so must the rollup.
    rows = rollup_rows([make_entry(at=T0 + 59.9999997)])
    assert rows.minutes == {(T0 + 60, "forwarded"): 1}


def test_it_counts_a_client_under_the_address_querylog_stores():
    rows = rollup_rows([make_entry(at=T0, client="2001:DB8:0:0::1")])
    assert rows.clients == {(T0, "2001:db8::1"): 1}


@pytest.mark.django_db(transaction=True)
def test_it_adds_to_existing_counts_on_conflict():
    batch = [make_entry(at=T0 + 1, status="blocked", domain="ads.example", client="192.0.2.1")] * 3

    rollup_apply(batch)
    rollup_apply(batch[:2])

    assert list(QueryRollup.objects.values_list("bucket", "status", "count")) == [(utc(T0), "blocked", 5)]
    assert list(DomainRollup.objects.values_list("bucket", "domain", "status", "count")) == [
        (utc(T0), "ads.example", "blocked", 5)
    ]
    assert list(ClientRollup.objects.values_list("bucket", "client", "count")) == [(utc(T0), "192.0.2.1", 5)]


@pytest.mark.django_db(transaction=True)
def test_the_writer_keeps_rollups_equal_to_the_rows():
    writer = QueryLogWriter()
    entries = [make_entry(i, at=T0 + i * 7.3) for i in range(1200)]

    for start in range(0, 1200, 250):
        writer(entries[start : start + 250])

    assert sum(QueryRollup.objects.values_list("count", flat=True)) == QueryLog.objects.count() == 1200
    for status in ("blocked", "forwarded", "cached"):
        in_rows = QueryLog.objects.filter(status=status).count()
        assert sum(QueryRollup.objects.filter(status=status).values_list("count", flat=True)) == in_rows
        assert sum(DomainRollup.objects.filter(status=status).values_list("count", flat=True)) == in_rows
    assert sum(ClientRollup.objects.values_list("count", flat=True)) == 1200


@pytest.mark.django_db(transaction=True)
def test_a_failed_rollup_write_rolls_back_the_rows_too(monkeypatch):
    def broken(rows, using="default", **kwargs):
        raise RuntimeError("rollup failed")

    monkeypatch.setattr("querylog.logger.writer.rollup_write", broken)

    with pytest.raises(RuntimeError):
        QueryLogWriter()([make_entry(at=T0)])

    assert QueryLog.objects.count() == 0


def test_the_upsert_adds_to_the_existing_count_by_table_name():
    from django.db import connection

    head, tail, width = rollups._upsert_parts(connection, QueryRollup, ("bucket", "status"))
    assert head == 'INSERT INTO "querylog_queryrollup" ("bucket", "status", "count")'
    assert tail == (
        ' ON CONFLICT ("bucket", "status") DO UPDATE SET "count" = "querylog_queryrollup"."count" + excluded."count"'
    )
    assert width == 3


def test_it_counts_each_clients_blocked_queries_per_hour():
    entries = [
        make_entry(at=T0 + 1, status="blocked", client="192.0.2.1"),
        make_entry(at=T0 + 2, status="forwarded", client="192.0.2.1"),
        make_entry(at=T0 + 3, status="blocked", client="192.0.2.1"),
        make_entry(at=T0 + 4, status="cached", client="192.0.2.2"),
    ]

    rows = rollup_rows(entries)

    assert rows.clients_blocked == {(T0, "192.0.2.1"): 2}


@pytest.mark.django_db(transaction=True)
def test_it_adds_blocked_counts_to_the_client_rollup_on_conflict():
    batch = [
        make_entry(at=T0 + 1, status="blocked", client="192.0.2.1"),
        make_entry(at=T0 + 2, status="forwarded", client="192.0.2.1"),
        make_entry(at=T0 + 3, status="allowed", client="192.0.2.2"),
    ]

    rollup_apply(batch)
    rollup_apply(batch[:2])

    assert list(ClientRollup.objects.order_by("client").values_list("client", "count", "blocked")) == [
        ("192.0.2.1", 4, 2),
        ("192.0.2.2", 1, 0),
    ]
