"""querylog.logger.swappable: SIGHUP swaps the logger behind the engine without losing entries."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ImproperlyConfigured

from gloryhole_site.testing.querylog import RecordingWriter, make_entries, make_entry
from querylog.logger.config import QueryLogConfig
from querylog.logger.counters import CloseReport
from querylog.logger.pool import QueryLogger
from querylog.logger.swappable import SwappableQueryLogger
from querylog.models import QueryLog


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_swapping_mode_and_workers_loses_no_entry():
    swappable = SwappableQueryLogger(QueryLogger(20000, 1, 200, 0.02)).start()
    configs = [
        QueryLogConfig(mode="pool", workers=2, buffer_size=20000, batch_size=100, flush_interval=0.02),
        QueryLogConfig(mode="thread", buffer_size=20000),
        QueryLogConfig(mode="process", workers=2, buffer_size=20000, batch_size=300, flush_interval=0.02),
        QueryLogConfig(mode="pool", workers=1, buffer_size=20000, batch_size=300, flush_interval=0.02),
    ]
    bursts = [2000, 2000, 150, 2000, 2000]
    go = [threading.Event() for _ in bursts]
    accepted = []

    def feeder() -> None:
        n = 0
        for event, burst in zip(go, bursts, strict=True):
            assert event.wait(20)
            for e in make_entries(burst, start=n):
                accepted.append(swappable.log_async(e))  # looked up each call, as the engine must
            n += burst

    thread = threading.Thread(target=feeder)
    thread.start()
    go[0].set()
    for i, config in enumerate(configs):
        go[i + 1].set()  # the next burst runs while the swap closes the old logger
        swappable.reconfigure(config, timeout=20)
    thread.join()
    report = swappable.close(timeout=20)

    assert len(accepted) == sum(bursts)
    assert all(accepted)
    assert report == CloseReport(written=sum(bursts), unwritten=0, dropped=0)
    assert QueryLog.objects.count() == sum(bursts)
    assert sorted(QueryLog.objects.values_list("duration_us", flat=True)) == [100 + i for i in range(sum(bursts))]
    assert (swappable.mode, swappable.workers, swappable.generation) == ("pool", 1, 4)


def test_an_entry_sent_to_a_replaced_logger_is_forwarded_to_its_successor():
    first = RecordingWriter()
    swappable = SwappableQueryLogger(QueryLogger(100, 1, 10, 0.02, writer=first)).start()
    stale = swappable.log_async  # a listener that fetched the method before SIGHUP
    second = RecordingWriter()
    swappable.reconfigure(QueryLogConfig(mode="pool", workers=1), writer=second)

    assert stale(make_entry(1)) is True
    report = swappable.close(timeout=5)

    assert report == CloseReport(written=1, unwritten=0, dropped=0)
    assert [e.duration_us for e in second.written] == [101]


def test_sighup_rereads_the_environment(monkeypatch):
    swappable = SwappableQueryLogger.from_settings().start()
    try:
        assert swappable.reconfigure_from_environ() is None  # nothing changed: no swap
        monkeypatch.setenv("GLORYHOLE_QUERY_LOG_MODE", "thread")
        monkeypatch.setenv("GLORYHOLE_QUERY_LOG_BUFFER", "1234")
        swappable.reconfigure_from_environ()
        assert (swappable.mode, swappable.capacity) == ("thread", 1234)
        monkeypatch.setenv("GLORYHOLE_QUERY_LOG_WORKERS", "many")
        with pytest.raises(ImproperlyConfigured, match="GLORYHOLE_QUERY_LOG_WORKERS"):
            swappable.reconfigure_from_environ()
        assert swappable.mode == "thread"  # a bad value leaves the running logger alone
    finally:
        swappable.close(timeout=5)
