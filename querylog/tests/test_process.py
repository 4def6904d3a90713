"""querylog.logger.process: the pool's queue in the engine, the writes in child processes.

What the pool's tests check about rows and close() is run in both modes there
(test_pool.py, test_base.py, test_swappable.py); here is what only a child process
can do: die, be stopped, follow a privacy change across the pipe, and exit when the
engine goes.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from gloryhole_site.testing.querylog import make_entries, make_entry, pool, wait_for
from querylog.logger.counters import CloseReport
from querylog.logger.frames import batch_rows, entries_from_rows
from querylog.logger.process import ChildLink
from querylog.models import QueryLog
from querylog.privacy import PrivacyPolicy, PrivacyState

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def started(logger):
    logger.start()
    wait_for(lambda: logger.child_pids, 60)  # Django's start in the child takes a moment
    return logger


def test_entries_cross_the_pipe_unchanged():
    entries = [*make_entries(5), make_entry(9, domain="a\x00b.example", client_name="é", duration_us=-3)]
    assert entries_from_rows(batch_rows(entries)) == entries


def test_rows_equal_logged_entries_and_the_counters_follow(loggers):
    logger = started(pool(loggers, buffer=5000, batch=100, mode="process"))
    for e in make_entries(1000):
        assert logger.log_async(e)

    wait_for(lambda: logger.written == 1000)
    stats = logger.stats()
    assert (stats.mode, stats.written, stats.drops, stats.unwritten) == ("process", 1000, 0, 0)
    assert stats.write_rate > 0 and stats.workers == 1 and stats.capacity == 5000
    assert stats.batch_seconds.counts and sum(stats.batch_seconds.counts) >= 10
    assert logger.close(timeout=20) == CloseReport(written=1000, unwritten=0, dropped=0)
    assert QueryLog.objects.count() == 1000
    assert not logger.child_pids  # the child exited with the logger


def test_it_drains_everything_queued_before_start_on_close(loggers):
    logger = pool(loggers, buffer=5000, batch=128, mode="process")
    for e in make_entries(3000):
        assert logger.log_async(e)  # never started: the child is started to drain

    assert logger.close(timeout=60) == CloseReport(written=3000, unwritten=0, dropped=0)
    assert sorted(QueryLog.objects.values_list("duration_us", flat=True)) == [100 + i for i in range(3000)]


def test_a_stopped_child_fills_the_queue_and_drops_are_counted(loggers):
    logger = started(pool(loggers, buffer=50, batch=10, mode="process"))
    (pid,) = logger.child_pids
    os.kill(pid, signal.SIGSTOP)  # a child that does not write any more (as a locked database would)
    accepted, slowest = [], 0.0
    try:
        for e in make_entries(200):
            began = time.perf_counter()
            accepted.append(logger.log_async(e))
            slowest = max(slowest, time.perf_counter() - began)
    finally:
        os.kill(pid, signal.SIGCONT)
    taken = accepted.count(True)

    assert slowest < 0.5  # DNS never waits for the writer process

    assert accepted[:50] == [True] * 50  # the feeder may have taken a batch or two
    assert logger.drops == 200 - taken > 0
    assert logger.close(timeout=20) == CloseReport(written=taken, unwritten=0, dropped=200 - taken)
    assert QueryLog.objects.count() == taken


def test_a_child_killed_mid_batch_is_replaced_and_the_batch_sent_again(loggers):
    logger = started(pool(loggers, buffer=1000, batch=100, mode="process"))
    (pid,) = logger.child_pids
    os.kill(pid, signal.SIGSTOP)
    for e in make_entries(100):  # a full batch: the feeder sends it and waits for the ack
        assert logger.log_async(e)
    wait_for(lambda: logger.size == 0)
    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: logger.written == 100, 60)
    assert logger.children_started == 2
    assert logger.child_pids != [pid]
    assert logger.write_errors >= 1
    assert logger.close(timeout=20) == CloseReport(written=100, unwritten=0, dropped=0)
    assert QueryLog.objects.count() == 100  # once: the killed child never committed it


def test_a_batch_whose_child_dies_twice_is_counted_unwritten_never_lost(loggers, monkeypatch):
    send = ChildLink.write

    def write_then_die(link, rows, policy):
        link.proc.kill()  # the child crashes while the batch is on its way
        link.proc.wait()
        return send(link, rows, policy)

    logger = started(pool(loggers, buffer=1000, batch=50, mode="process"))
    monkeypatch.setattr(ChildLink, "write", write_then_die)
    for e in make_entries(50):
        assert logger.log_async(e)
    wait_for(lambda: logger.unwritten == 50, 60)
    monkeypatch.setattr(ChildLink, "write", send)
    for e in make_entries(30, start=50):  # the next batch goes to a third child, which works
        assert logger.log_async(e)

    assert logger.close(timeout=60) == CloseReport(written=30, unwritten=50, dropped=0)
    assert logger.children_started == 3
    assert QueryLog.objects.count() == 30


def test_the_child_follows_the_privacy_policy_and_the_engine_counts_not_logged(loggers):
    privacy = PrivacyState(PrivacyPolicy(blocked_only=True))
    logger = started(pool(loggers, buffer=1000, batch=60, mode="process", privacy=privacy))
    entries = make_entries(60)
    for e in entries:
        assert logger.log_async(e)
    wait_for(lambda: privacy.not_logged_total == 50)  # 10 of every 60 are blocked
    privacy.policy = PrivacyPolicy()  # changed between batches: the next one is stored whole
    for e in make_entries(60, start=60):
        assert logger.log_async(e)

    assert logger.close(timeout=20) == CloseReport(written=70, unwritten=0, dropped=0)
    assert QueryLog.objects.filter(status="blocked").count() == 20
    assert QueryLog.objects.count() == 70
    assert privacy.not_logged()["not_blocked"] == 50


def test_the_child_exits_when_the_engine_end_of_the_pipe_closes(loggers):
    logger = started(pool(loggers, mode="process"))
    (pid,) = logger.child_pids
    (link,) = logger._links
    link.sock.shutdown(2)  # what the kernel does when the engine dies

    wait_for(lambda: link.proc.poll() is not None, 20)
    assert link.proc.returncode == 0
    assert pid not in logger.child_pids


def test_while_no_child_can_start_the_queue_fills_drops_are_counted_then_it_drains(loggers, monkeypatch):
    from querylog.logger.process import ProcessQueryLogger

    hello = ProcessQueryLogger._hello

    def broken(self):  # a child that cannot load its database backend
        config = hello(self)
        return {**config, "database": {**config["database"], "ENGINE": "no.such.backend"}}

    monkeypatch.setattr(ProcessQueryLogger, "_hello", broken)
    logger = pool(loggers, buffer=100, batch=10, mode="process", retry_initial=0.05, retry_max=0.2).start()
    accepted = [logger.log_async(e) for e in make_entries(150)]
    wait_for(lambda: logger.write_errors >= 2, 60)  # two starts failed: nothing was taken meanwhile

    assert accepted == [True] * 100 + [False] * 50
    assert (logger.size, logger.drops, logger.written) == (100, 50, 0)
    monkeypatch.setattr(ProcessQueryLogger, "_hello", hello)
    assert logger.close(timeout=60) == CloseReport(written=100, unwritten=0, dropped=50)
    assert QueryLog.objects.count() == 100
