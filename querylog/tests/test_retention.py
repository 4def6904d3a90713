from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from querylog.models import ClientRollup, DomainRollup, QueryLog, QueryRollup, RollupSummary
from querylog.retention import RetentionThread, querylog_purge, retention_thread_from_settings


def add_rows(when, n: int, domain: str) -> None:
    QueryLog.objects.bulk_create(
        QueryLog(timestamp=when, client="192.0.2.1", protocol="udp", domain=domain, qtype="A", rcode="NOERROR",
                 status="forwarded")
        for _ in range(n)
    )  # fmt: skip


def add_rollups(bucket, tag: str) -> None:
    QueryRollup.objects.create(bucket=bucket, status=tag, count=1)
    DomainRollup.objects.create(bucket=bucket, domain=f"{tag}.example", status="forwarded", count=1)
    ClientRollup.objects.create(bucket=bucket, client=tag, count=1)


@pytest.fixture
def old_and_new():
    now = timezone.now()
    add_rows(now - timedelta(days=8), 23, "old.example")
    add_rows(now - timedelta(days=6, hours=23), 5, "new.example")
    add_rollups((now - timedelta(days=8)).replace(minute=0, second=0, microsecond=0), "old")
    add_rollups(now.replace(minute=0, second=0, microsecond=0), "new")


@pytest.mark.django_db
def test_it_deletes_rows_older_than_the_window_in_small_batches(old_and_new):
    deleted = querylog_purge(7, batch=5)

    assert deleted == 23
    assert set(QueryLog.objects.values_list("domain", flat=True)) == {"new.example"}
    assert QueryLog.objects.count() == 5


@pytest.mark.django_db
def test_each_delete_touches_at_most_one_batch(old_and_new):
    with CaptureQueriesContext(connection) as ctx:
        querylog_purge(7, batch=5)

    deletes = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('DELETE FROM "querylog_querylog"')]
    assert len(deletes) == 5  # 23 rows: 5 + 5 + 5 + 5 + 3
    assert all(d.endswith("LIMIT 5)") for d in deletes)


@pytest.mark.django_db
def test_it_purges_rollups_older_than_the_window(old_and_new):
    querylog_purge(7)

    assert list(QueryRollup.objects.values_list("status", flat=True)) == ["new"]
    assert list(DomainRollup.objects.values_list("domain", flat=True)) == ["new.example"]
    assert list(ClientRollup.objects.values_list("client", flat=True)) == ["new"]


@pytest.mark.django_db
def test_the_command_purges_with_the_given_days(old_and_new, capsys):
    call_command("purgequerylog", "--days", "7", "--batch", "10")

    assert "Deleted 23 query log rows older than 7 days." in capsys.readouterr().out
    assert QueryLog.objects.count() == 5


@pytest.mark.django_db
def test_the_command_defaults_to_the_retention_setting(old_and_new, settings):
    settings.GLORYHOLE_QUERY_LOG_RETENTION_DAYS = 30
    call_command("purgequerylog")
    assert QueryLog.objects.count() == 28


@pytest.mark.django_db(transaction=True)
def test_the_retention_thread_purges_on_start_and_stops(old_and_new):
    thread = RetentionThread(7, interval=3600).start()
    thread.stop()  # the first run completes before stop() returns (it joins)

    assert thread.runs == 1
    assert thread.deleted == 23
    assert not thread._thread.is_alive()


def test_zero_retention_days_keeps_everything(settings):
    settings.GLORYHOLE_QUERY_LOG_RETENTION_DAYS = 0
    settings.GLORYHOLE_ROLLUP_RETENTION_DAYS = 0
    assert retention_thread_from_settings() is None
    settings.GLORYHOLE_QUERY_LOG_RETENTION_DAYS = 3
    assert retention_thread_from_settings().days == 3
    assert retention_thread_from_settings().rollup_days is None
    settings.GLORYHOLE_QUERY_LOG_RETENTION_DAYS = 0
    settings.GLORYHOLE_ROLLUP_RETENTION_DAYS = 365
    thread = retention_thread_from_settings()
    assert thread.days is None and thread.rollup_days == 365


@pytest.mark.django_db
def test_rows_and_rollups_have_their_own_retention(old_and_new):
    ancient = (timezone.now() - timedelta(days=400)).replace(minute=0, second=0, microsecond=0)
    add_rollups(ancient, "ancient")
    deleted = querylog_purge(7, rollup_days=365)
    assert deleted == 23 and QueryLog.objects.count() == 5
    # Rollups of 8 days ago outlive the rows they counted; those past 365 days go.
    assert sorted(QueryRollup.objects.values_list("status", flat=True)) == ["new", "old"]
    assert sorted(ClientRollup.objects.values_list("client", flat=True)) == ["new", "old"]
    assert sorted(DomainRollup.objects.values_list("domain", flat=True)) == ["new.example", "old.example"]


@pytest.mark.django_db
def test_the_command_keeps_rollups_for_their_own_days(old_and_new, settings):
    settings.GLORYHOLE_ROLLUP_RETENTION_DAYS = 365
    call_command("purgequerylog", "--days", "7")
    assert QueryLog.objects.count() == 5 and QueryRollup.objects.count() == 2
    call_command("purgequerylog", "--days", "7", "--rollup-days", "7")
    assert list(QueryRollup.objects.values_list("status", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)  # run_once closes the thread's connections, as the engine's thread does
@pytest.mark.parametrize(
    ("time_of_day", "summarised_days_ago"),
    [
        # Yesterday ended under an hour ago; noon 5 days ago is still inside the window.
        (timedelta(minutes=30), {2, 3, 4, 5}),
        # Yesterday is final; noon 5 days ago is purged.
        (timedelta(hours=13, minutes=5), {1, 2, 3, 4}),
    ],
)
def test_the_retention_thread_stores_closed_periods_summaries_and_drops_them_with_the_rollups(
    time_of_day, summarised_days_ago
):
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    now = today + time_of_day
    for days_ago in range(1, 12):
        add_rollups(today - timedelta(days=days_ago) + timedelta(hours=12), f"d{days_ago}")
    retention = RetentionThread(5)
    retention.run_once(now)
    # Rollups of the last 5 days stay; the days among them that are over (and over
    # for an hour) get a stored summary, and so do yesterday's busy hour.
    kept = sorted(QueryRollup.objects.values_list("bucket", flat=True))
    assert kept[0] >= now - timedelta(days=5, minutes=1)
    stored = set(RollupSummary.objects.values_list("start", "hours"))
    assert {start for start, hours in stored if hours == 24} == {today - timedelta(days=d) for d in summarised_days_ago}
    assert (today - timedelta(hours=12), 1) in stored
    assert retention.summaries == len(stored)

    # Days later: retention removes the summaries whose rollups are gone.
    old = today - timedelta(days=9)
    RollupSummary.objects.create(start=old, hours=24, minutes=[], domains={}, blocked={}, clients={})
    querylog_purge(5, now=now)
    assert set(RollupSummary.objects.values_list("start", "hours")) == stored


@pytest.mark.django_db
def test_a_summary_is_purged_once_its_whole_period_is_before_the_cutoff():
    now = timezone.now()
    cutoff = now - timedelta(days=5)
    cutoff_hour = cutoff.replace(minute=0, second=0, microsecond=0)
    cutoff_day = cutoff_hour.replace(hour=0)
    periods = {
        (cutoff_day, 24): "kept: the cutoff falls inside it",
        (cutoff_day - timedelta(days=1), 24): "gone",
        (cutoff_hour, 1): "kept: the cutoff falls inside it",
        (cutoff_hour - timedelta(hours=1), 1): "gone",
        (cutoff_hour + timedelta(hours=1), 1): "kept",
    }
    for start, hours in periods:
        RollupSummary.objects.create(start=start, hours=hours, minutes=[], domains={}, blocked={}, clients={})
    querylog_purge(5, now=now)
    left = set(RollupSummary.objects.values_list("start", "hours"))
    assert left == {period for period, fate in periods.items() if fate.startswith("kept")}


def test_a_database_that_is_down_costs_one_warning_line_without_a_traceback(monkeypatch, caplog):
    from django.db import OperationalError

    from querylog import retention as retention_module

    def down(*args, **kwargs):
        raise OperationalError("connection failed: Connection refused\n\tIs the server running on that host?")

    monkeypatch.setattr(retention_module, "querylog_purge", down)

    assert RetentionThread(7).run_once() == 0

    (record,) = [r for r in caplog.records if r.name == "querylog.retention"]
    assert record.exc_info is None
    assert "Connection refused Is the server running" in record.getMessage()
    assert "\n" not in record.getMessage()
