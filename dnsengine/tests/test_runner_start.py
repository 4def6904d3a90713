"""EngineRunner's start: nothing is served before the configuration is loaded."""

from __future__ import annotations

import logging
import threading

import pytest

from dnsengine.runtime import runner as runner_module
from dnsengine.runtime.dbcheck import DatabaseUnreachable
from dnsengine.runtime.runner import EngineRunner


@pytest.fixture
def database_back_after(monkeypatch):
    """database_check fails `n` times (unreachable), then passes; returns the attempts made."""
    attempts = []

    def arrange(n: int) -> list[int]:
        def check() -> None:
            attempts.append(1)
            if len(attempts) <= n:
                raise DatabaseUnreachable("postgresql database 'x' on 127.0.0.1:1: Connection refused")

        monkeypatch.setattr(runner_module, "database_check", check)
        return attempts

    return arrange


def test_it_waits_for_the_database_then_loads_the_configuration(transactional_db, engine_config, database_back_after,
                                                                caplog):  # fmt: skip
    caplog.set_level(logging.INFO, logger="dnsengine.runtime.runner")
    attempts = database_back_after(3)
    runner = EngineRunner(engine_config)

    assert runner.wait_for_configuration(threading.Event(), report_interval=0.01)

    assert len(attempts) == 4
    assert runner.engine.watcher.generation is not None
    waiting = [r.getMessage() for r in caplog.records if "waiting for the database" in r.getMessage()]
    assert len(waiting) == 3
    assert all("Connection refused" in line for line in waiting)


def test_a_stop_while_waiting_returns_at_once_with_nothing_loaded(transactional_db, engine_config, database_back_after):
    database_back_after(10**6)
    runner = EngineRunner(engine_config)
    stop = threading.Event()
    stop.set()

    assert not runner.wait_for_configuration(stop, report_interval=10)

    assert runner.engine.watcher.generation is None


def test_with_fail_open_it_returns_at_once_with_nothing_loaded(transactional_db, engine_config, database_back_after,
                                                               settings, caplog):  # fmt: skip
    settings.GLORYHOLE_FAIL_OPEN = True
    database_back_after(10**6)
    runner = EngineRunner(engine_config)

    assert runner.wait_for_configuration(threading.Event(), report_interval=10)

    assert runner.engine.watcher.generation is None
    assert "WITHOUT block lists" in caplog.text
