"""Scheduled updates: what is due, who takes it, the child process, and a running engine picking the result up."""

from __future__ import annotations

import re
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from dnsengine.blocklists.importer import _claim
from dnsengine.models import BlockedDomain, Blocklist
from dnsengine.runtime.engine import Engine
from dnsengine.runtime.updater import BlocklistUpdater, blocklists_due, update_in_process, update_in_subprocess
from gloryhole_site.testing.dnsclient import Client, answers
from gloryhole_site.testing.querylog import RecordingSink
from gloryhole_site.testing.rundns import shared_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("offline_lists")]

# The start of a line of the log format (settings.LOGGING): a line nested in another shows one inside.
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


@pytest.fixture(autouse=True)
def fast_fetches(settings):
    settings.GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT = 1.0
    settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS = 3
    settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS = 24


def in_process_updater() -> BlocklistUpdater:
    return BlocklistUpdater(first_check_after=3600, run=update_in_process)


def domains_of(name: str) -> set[str]:
    return set(BlockedDomain.objects.filter(blocklist__name=name).values_list("domain", flat=True))


# --- what is due ---------------------------------------------------------------------------------


def test_a_new_subscription_is_due_at_once_and_then_a_day_later(list_server):
    Blocklist.objects.filter(url="").delete()  # the bundled list would be due too
    Blocklist.objects.create(name="new", url=list_server.serve("/new", "new.example.com\n"))
    updater = in_process_updater()
    assert blocklists_due()

    assert updater.check_now()

    assert domains_of("new") == {"new.example.com"}
    assert not blocklists_due()
    next_update = Blocklist.objects.get(name="new").next_update
    assert timedelta(hours=22.7) < next_update - timezone.now() < timedelta(hours=25.3)
    assert not updater.check_now()
    assert list_server.paths() == ["/new"]


def test_lists_not_due_disabled_or_without_url_are_left_alone(list_server):
    Blocklist.objects.filter(url="").delete()
    later = timezone.now() + timedelta(hours=1)
    Blocklist.objects.create(name="later", url=list_server.serve("/later", "a.example.com\n"), next_update=later)
    Blocklist.objects.create(name="off", url=list_server.serve("/off", "b.example.com\n"), enabled=False)
    Blocklist.objects.create(name="by hand")
    updater = in_process_updater()

    assert not updater.check_now()

    assert list_server.paths() == [] and updater.runs == 0


def test_a_due_list_is_taken_by_one_engine_only(list_server):
    Blocklist.objects.create(name="due", url=list_server.serve("/due", "a.example.com\n"))
    seen_by_first = Blocklist.objects.get(name="due")
    seen_by_second = Blocklist.objects.get(name="due")

    assert _claim(seen_by_first)
    assert not _claim(seen_by_second)


def test_a_failed_update_keeps_the_list_and_is_retried_within_the_hour(list_server):
    url = list_server.serve("/list", "a.example.com\n")
    Blocklist.objects.create(name="list", url=url)
    in_process_updater().check_now()
    Blocklist.objects.filter(name="list").update(next_update=timezone.now())
    list_server.serve("/list", status=503)
    updater = in_process_updater()

    assert updater.check_now()

    blocklist = Blocklist.objects.get(name="list")
    assert updater.last_exit == 1
    assert domains_of("list") == {"a.example.com"} and "HTTP 503" in blocklist.last_error
    assert blocklist.next_update - timezone.now() < timedelta(hours=1.1)


def refused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ({"status": 404}, "answered HTTP 404 Not Found"),
        ({"status": 500}, "answered HTTP 500 Internal Server Error"),
        (None, "Connection refused"),
    ],
    ids=["404", "500", "refused"],
)
def test_a_failed_download_is_logged_once_in_one_line_with_url_and_reason(list_server, caplog, route, reason):
    url = list_server.serve("/list", **route) if route else f"http://127.0.0.1:{refused_port()}/list"
    Blocklist.objects.create(name="list", url=url)
    caplog.set_level("DEBUG")

    assert in_process_updater().check_now()

    about_it = [r for r in caplog.records if url in r.getMessage()]
    assert len(about_it) == 1, caplog.text
    record = about_it[0]
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert "\n" not in message and not re.search(TIMESTAMP, message)
    assert message.startswith("blocklist update: list: FAILED, keeps its 0 entries: ") and url in message
    assert reason in message
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [message]


def test_a_check_that_fails_is_logged_and_the_updater_carries_on(caplog):
    def broken(stop, timeout):
        raise RuntimeError("disk full")

    Blocklist.objects.create(name="due", url="http://127.0.0.1:9/list")
    updater = BlocklistUpdater(first_check_after=3600, run=broken)

    assert not updater.check_now()
    assert "blocklist update check failed" in caplog.text


# --- the child process -----------------------------------------------------------------------------


@pytest.fixture
def child_env(monkeypatch):
    """The child process reads the test database and short limits from its environment."""
    monkeypatch.setenv("DATABASE_URL", shared_database_url())
    monkeypatch.setenv("GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT", "10")
    monkeypatch.setenv("GLORYHOLE_BLOCKLIST_UPDATE_HOURS", "24")


@pytest.mark.integration
def test_the_child_process_updates_the_due_lists(list_server, child_env, capfd):
    Blocklist.objects.create(name="due", url=list_server.serve("/due", "0.0.0.0 child.example.com\n"))

    status = update_in_subprocess(threading.Event(), timeout=60)

    assert status == 0
    assert domains_of("due") == {"child.example.com"}
    # The child logs to the standard error it shares with the engine.
    err = capfd.readouterr().err
    assert "INFO dnsengine.blocklists.importer: blocklist update: due: updated, 1 entries (+1 / -0)" in err


@pytest.mark.integration
def test_a_failed_download_in_the_child_is_logged_once_in_one_line(list_server, child_env, capfd, caplog):
    url = list_server.serve("/gone", status=404)
    Blocklist.objects.create(name="gone", url=url)
    caplog.set_level("DEBUG")

    status = update_in_subprocess(threading.Event(), timeout=60)

    assert status == 1
    err = capfd.readouterr().err
    about_it = [line for line in err.splitlines() if "gone" in line]
    assert len(about_it) == 1, err
    assert re.fullmatch(
        rf"{TIMESTAMP} WARNING dnsengine.blocklists.importer: blocklist update: gone: FAILED, keeps its 0 entries: "
        rf"{re.escape(url)} answered HTTP 404 Not Found \(\d+\.\d s\)",
        about_it[0],
    ), about_it[0]
    # This process adds nothing: no line of the child's nested in one of ours, no "ended with status".
    assert not [r for r in caplog.records if r.name == "dnsengine.runtime.updater"]
    assert "CommandError" not in err


@pytest.mark.integration
def test_stopping_the_engine_ends_an_update_in_progress(list_server, child_env):
    Blocklist.objects.create(name="slow", url=list_server.serve("/slow", "a.example.com\n", delay=30))
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()

    status = update_in_subprocess(stop, timeout=60)

    assert status != 0
    assert time.monotonic() - started < 15
    assert domains_of("slow") == set()


# --- the engine ------------------------------------------------------------------------------------


def test_the_engine_runs_the_updater_thread_and_stops_it(engine_config):
    updater = BlocklistUpdater(first_check_after=3600)
    engine = Engine(engine_config, blocklist_updater=updater)
    engine.start()
    try:
        assert updater.running
    finally:
        engine.stop()
    assert not updater.running


def test_with_updates_left_to_cron_the_engine_has_no_updater(engine_config, settings):
    settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS = 0

    assert Engine(engine_config).updater is None


def test_by_default_the_engine_waits_minutes_before_its_first_check(engine_config):
    # Long enough that the network is up, and longer than a test may run (pytest-timeout).
    assert Engine(engine_config).updater.first_check_after >= 120


def test_an_update_reaches_a_running_engine_without_restart_and_blocks_are_attributed(
    list_server, make_engine, engine_config
):
    Blocklist.objects.filter(url="").delete()
    sink = RecordingSink()
    engine = make_engine(engine_config, query_logger=sink)
    client = Client(engine.port)
    assert answers(client.query("fresh.tracker.test")) == ["A 192.0.2.1"]
    reloaded = threading.Event()
    # Creating the lists bumps the generation too: only the reload with their names counts.
    engine.watcher.on_reload = lambda snapshot: snapshot.matcher.size == 2 and reloaded.set()
    Blocklist.objects.create(name="b-trackers", url=list_server.serve("/b", "fresh.tracker.test\nshared.test\n"))
    Blocklist.objects.create(name="a-ads", url=list_server.serve("/a", "0.0.0.0 shared.test\n"))

    assert in_process_updater().check_now()
    assert reloaded.wait(5), "the engine did not reload"

    assert answers(client.query("fresh.tracker.test")) == ["A 0.0.0.0"]  # its forwarded answer was dropped
    assert answers(client.query("x.fresh.tracker.test")) == ["A 0.0.0.0"]
    entry = sink.last_for("x.fresh.tracker.test")
    assert (entry.status, entry.rule) == ("blocked", "list:b-trackers")
    # A name in two lists is held once and attributed to the first (by name).
    assert answers(client.query("shared.test")) == ["A 0.0.0.0"]
    assert sink.last_for("shared.test").rule == "list:a-ads"
    assert engine.resolver.snapshot.matcher.size == 2


@pytest.mark.integration
def test_dns_keeps_answering_while_an_update_downloads(list_server, make_engine, engine_config, settings):
    settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS = 1.5
    engine = make_engine(engine_config)
    client = Client(engine.port)
    Blocklist.objects.create(name="slow", url=list_server.serve("/slow", "#\n", endless=b"a.test\n", drip=0.05))
    updater = in_process_updater()

    def check_in_thread() -> None:
        try:
            updater.check_now()
        finally:
            connections.close_all()  # or its idle session outlives the test database

    update = threading.Thread(target=check_in_thread)
    update.start()

    answered = [answers(client.query(f"q{i}.example.com", timeout=1.0)) for i in range(20)]
    update.join(10)

    assert answered == [["A 192.0.2.1"]] * 20
    assert not update.is_alive()
    assert "took longer than 1.5 s" in Blocklist.objects.get(name="slow").last_error
