"""Forgetting a client: its rows and its share of the rollups go, exactly, while the writer keeps writing."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gloryhole_site.testing.querylog import make_entry
from querylog.forget import client_forget, forget_targets
from querylog.logger.writer import QueryLogWriter
from querylog.models import ClientRollup, DomainRollup, QueryLog, QueryRollup, RollupSummary

FORGOTTEN = "192.0.2.66"


def entries(n: int, client: str, *, start: int = 0, at: float | None = None, name: str = ""):
    return [make_entry(i, at=at, client=client, client_name=name) for i in range(start, start + n)]


def rollups_match_rows() -> None:
    """Every rollup equals what the rows that remain would give it (nothing older exists here)."""
    rows = list(QueryLog.objects.values_list("timestamp", "client", "domain", "status"))
    minutes = Counter((t.replace(second=0, microsecond=0), s) for t, _, _, s in rows)
    domains = Counter((t.replace(minute=0, second=0, microsecond=0), d, s) for t, _, d, s in rows)
    clients = Counter((t.replace(minute=0, second=0, microsecond=0), c) for t, c, _, _ in rows)
    blocked = Counter((t.replace(minute=0, second=0, microsecond=0), c) for t, c, _, s in rows if s == "blocked")
    assert {(b, s): n for b, s, n in QueryRollup.objects.values_list("bucket", "status", "count") if n} == minutes
    assert {(b, d, s): n for b, d, s, n in DomainRollup.objects.values_list("bucket", "domain", "status", "count")
            if n} == domains  # fmt: skip
    assert {(b, c): n for b, c, n in ClientRollup.objects.values_list("bucket", "client", "count") if n} == clients
    assert {(b, c): n for b, c, n in ClientRollup.objects.values_list("bucket", "client", "blocked") if n} == blocked


@pytest.mark.django_db(transaction=True)
def test_forgetting_a_client_under_write_load_leaves_others_untouched_and_counts_exact():
    writer = QueryLogWriter("test")
    now = time.time()
    for k in range(3):  # three different hours
        writer(entries(500, FORGOTTEN, at=now - 1800 * k))
    writer(entries(300, "192.0.2.10", at=now - 1800))
    stop = threading.Event()
    written = Counter()

    def keep_writing() -> None:
        i = 0
        while not stop.is_set():
            batch = entries(50, f"198.51.100.{i % 3 + 1}", start=i * 50)
            writer(batch)
            written.update(e.client for e in batch)
            i += 1
        from django.db import connections

        connections.close_all()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        report = client_forget(FORGOTTEN, batch=100)
    finally:
        stop.set()
        thread.join(30)
    assert report.rows == 1500 and report.clients == [FORGOTTEN]
    assert written.total() > 0  # the writer really wrote meanwhile
    assert not QueryLog.objects.filter(client=FORGOTTEN).exists()
    assert not ClientRollup.objects.filter(client=FORGOTTEN).exists()
    assert QueryLog.objects.filter(client="192.0.2.10").count() == 300
    for client, n in written.items():
        assert QueryLog.objects.filter(client=client).count() == n
    rollups_match_rows()


@pytest.mark.django_db
def test_a_name_forgets_every_address_logged_under_it():
    writer = QueryLogWriter("test")
    writer(entries(5, "192.0.2.1", name="alice-phone") + entries(3, "192.0.2.2", name="alice-phone")
           + entries(4, "192.0.2.3", name="bob"))  # fmt: skip
    assert forget_targets("alice-phone") == ["192.0.2.1", "192.0.2.2"]
    report = client_forget("alice-phone")
    assert report.rows == 8
    assert set(QueryLog.objects.values_list("client", flat=True)) == {"192.0.2.3"}
    rollups_match_rows()


@pytest.mark.django_db
def test_hourly_client_counts_whose_rows_expired_go_too_and_summaries_are_dropped():
    writer = QueryLogWriter("test")
    writer(entries(10, FORGOTTEN, at=time.time() - 3 * 86400))
    QueryLog.objects.all().delete()  # as retention would: the rollups outlive the rows
    RollupSummary.objects.create(start=QueryRollup.objects.first().bucket.replace(minute=0), hours=1, minutes=[],
                                 domains={}, blocked={}, clients={FORGOTTEN: 10})  # fmt: skip
    client_forget(FORGOTTEN)
    assert not ClientRollup.objects.filter(client=FORGOTTEN).exists()
    assert not RollupSummary.objects.exists()


@pytest.mark.django_db
def test_the_command_forgets_and_says_what(capsys):
    QueryLogWriter("test")(entries(7, FORGOTTEN))
    call_command("forgetclient", FORGOTTEN)
    assert f"Forgot {FORGOTTEN}: 7 rows" in capsys.readouterr().out
    assert not QueryLog.objects.exists()
    with pytest.raises(CommandError, match="no client"):
        call_command("forgetclient", "nobody-by-this-name")
