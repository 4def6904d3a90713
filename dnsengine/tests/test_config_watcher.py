"""The config watcher when the database fails: what it keeps serving and what it logs."""

from __future__ import annotations

import logging

import pytest
from django.db import OperationalError

from dnsengine.core.resolver import Snapshot
from dnsengine.models import BlockedDomain, Blocklist
from dnsengine.runtime import watcher as watcher_module
from dnsengine.runtime.watcher import ConfigWatcher
from dnsengine.services import config_generation_bump


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeResolver:
    """What the watcher touches: the snapshot, a clock, the swap."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.clock = FakeClock()

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


@pytest.fixture
def watcher(transactional_db):
    blocklist = Blocklist.objects.create(name="ads")
    BlockedDomain.objects.create(blocklist=blocklist, domain="ads.example.com")
    config_generation_bump()
    clock = FakeClock()
    return ConfigWatcher(FakeResolver(), 2.0, clock=clock, failure_log_interval=60.0)


def take_database_down(monkeypatch) -> None:
    def fail() -> int:
        raise OperationalError('connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs it up?')

    monkeypatch.setattr(watcher_module, "config_generation_current", fail)


@pytest.fixture
def database_down(monkeypatch):
    take_database_down(monkeypatch)
    return monkeypatch


def failure_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dnsengine.runtime.watcher" and r.levelno >= logging.WARNING]


def test_repeated_reload_failures_are_logged_once_a_minute_with_the_reason_on_one_line(watcher, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="dnsengine.runtime.watcher")
    assert watcher.load_now()  # the first snapshot, before the database went away
    take_database_down(monkeypatch)

    for _ in range(30):  # a minute of polls every 2 s
        assert not watcher.load_now()
        watcher.clock.now += 2
    lines = failure_lines(caplog)

    assert len(lines) == 1
    message = lines[0].getMessage()
    assert "Connection refused" in message and "\n" not in message
    assert "still serving the previous one" in message
    assert lines[0].exc_info is None
    assert watcher.failures == 30

    watcher.load_now()  # a minute after the first line: the next one, with the count

    lines = failure_lines(caplog)
    assert len(lines) == 2
    assert "failure 31 in a row" in lines[1].getMessage()


def test_the_first_failure_keeps_its_traceback_at_debug_only(watcher, database_down, caplog):
    caplog.set_level(logging.DEBUG, logger="dnsengine.runtime.watcher")

    for _ in range(3):
        watcher.load_now()

    with_traceback = [r for r in caplog.records if r.exc_info is not None]
    assert [r.levelno for r in with_traceback] == [logging.DEBUG]


def test_with_nothing_loaded_yet_the_line_says_so_rather_than_previous_one(watcher, database_down, caplog):
    caplog.set_level(logging.WARNING, logger="dnsengine.runtime.watcher")

    watcher.load_now()

    message = failure_lines(caplog)[0].getMessage()
    assert "nothing loaded yet" in message
    assert "previous one" not in message


def test_when_the_database_is_back_the_lists_load_and_the_recovery_is_logged(watcher, database_down, caplog):
    caplog.set_level(logging.INFO, logger="dnsengine.runtime.watcher")
    watcher.load_now()
    watcher.load_now()
    database_down.undo()

    assert watcher.load_now()

    assert watcher.resolver.snapshot.matcher.size == 1
    assert watcher.failures == 0
    assert any("work again after 2 failed attempts" in r.getMessage() for r in caplog.records)


def test_load_now_or_raise_lets_the_error_through(watcher, database_down):
    with pytest.raises(OperationalError):
        watcher.load_now_or_raise()
