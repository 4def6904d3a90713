"""rundns --processes: the supervisor with stand-in workers, the worker's runner, the argument.

The stand-in worker is a few lines of Python that speak the workers' protocol (JSON
lines on standard output), so the supervisor's start, restart, signal forwarding and
sums are tested in milliseconds; test_rundns_processes starts the real thing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time

import pytest

from dnsengine.models import EngineStatus
from dnsengine.runtime import processes as procs
from dnsengine.runtime.runner import EngineRunner

# argv: index, port. Reports ready on the given port (or 5000 + index for port 0), counts a
# SIGHUP, on SIGTERM reports its counts (queries = 10 * (index + 1) + hups) and exits.
# With FAIL set in its environment, worker FAIL exits 3 before serving.
STAND_IN = r"""
import json, os, signal, sys, time
index, port = int(sys.argv[1]), int(sys.argv[2])
if os.environ.get("FAIL") == str(index):
    sys.exit(3)
stop, hups = [], []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
signal.signal(signal.SIGHUP, lambda *_: hups.append(1))
print("a stray line", flush=True)
print(json.dumps({"event": "ready", "port": port or 5000 + index, "pid": os.getpid(), "dot_port": 853}), flush=True)
while not stop:
    time.sleep(0.02)
print(json.dumps({"event": "stopped", "queries": 10 * (index + 1) + len(hups), "written": 10 * (index + 1),
                  "dropped": 1, "unwritten": 0, "not_logged": 0}), flush=True)
"""


def stand_in_argv(index: int, processes: int, host: str, port: int, wait: float) -> list[str]:
    return [sys.executable, "-c", STAND_IN, str(index), str(port)]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def supervisor():
    said: list[str] = []
    made: list[procs.Supervisor] = []

    def make(processes: int = 2, **kwargs) -> procs.Supervisor:
        sup = procs.Supervisor(processes, "127.0.0.1", 0, wait_report_interval=1, stop_timeout=10,
                               say=said.append, argv=stand_in_argv, **kwargs)  # fmt: skip
        sup.said = said
        made.append(sup)
        return sup

    yield make
    for sup in made:
        for worker in sup.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()


def serve_in_thread(sup: procs.Supervisor, stop: threading.Event, hup: threading.Event) -> threading.Thread:
    # serve() restarts workers, which the real supervisor does on its main thread (the
    # parent-death signal follows the forking thread); the stand-ins do not ask for it.
    thread = threading.Thread(target=sup.serve, args=(stop, hup), daemon=True)
    thread.start()
    return thread


def test_the_others_start_on_the_port_worker_0_picked_and_the_stop_sums_their_counts(supervisor):
    sup = supervisor(3)
    ready = sup.start(threading.Event())

    assert ready["port"] == 5000
    assert [w.ready["port"] for w in sup.workers] == [5000, 5000, 5000]
    assert sup.env["GLORYHOLE_DOT_PORT"] == "853"  # the DoT port worker 0 bound, for the others
    assert "[worker 0] a stray line" in sup.said
    totals = sup.stop()
    assert (totals.queries, totals.written, totals.dropped, totals.missing) == (60, 60, 3, [])
    assert all(w.proc is None for w in sup.workers)


def test_a_worker_that_fails_before_serving_stops_the_start_and_the_others(supervisor, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    sup = supervisor(2)

    with pytest.raises(procs.WorkerStartError, match="worker 1 exited with status 3 before serving"):
        sup.start(threading.Event())

    assert all(w.proc is None for w in sup.workers)  # worker 0 was stopped too


def test_a_dead_worker_is_restarted_and_its_reported_counts_kept(supervisor):
    sup = supervisor(2)
    sup.start(threading.Event())
    stop, hup = threading.Event(), threading.Event()
    thread = serve_in_thread(sup, stop, hup)
    first = sup.workers[1].proc
    first.send_signal(signal.SIGTERM)  # it reports its counts, then exits: as if someone else stopped it

    assert wait_for(lambda: sup.workers[1].proc not in (None, first) and sup.workers[1].ready is not None)
    assert sup.workers[1].restarts == 1
    stop.set()
    thread.join(5)
    totals = sup.stop()
    assert totals.restarts == 1
    assert totals.queries == 10 + 20 + 20  # worker 0, worker 1's first and second process
    assert totals.missing == []


def test_a_killed_worker_is_restarted_and_counted_as_missing(supervisor):
    sup = supervisor(2)
    sup.start(threading.Event())
    stop, hup = threading.Event(), threading.Event()
    thread = serve_in_thread(sup, stop, hup)
    first = sup.workers[0].proc
    first.kill()

    assert wait_for(lambda: sup.workers[0].proc not in (None, first) and sup.workers[0].ready is not None)
    stop.set()
    thread.join(5)
    totals = sup.stop()
    assert totals.missing == [0]
    assert totals.queries == 10 + 20


def test_sighup_is_forwarded_to_every_worker(supervisor):
    sup = supervisor(2)
    sup.start(threading.Event())
    stop, hup = threading.Event(), threading.Event()
    thread = serve_in_thread(sup, stop, hup)
    hup.set()

    assert wait_for(lambda: not hup.is_set())
    time.sleep(0.2)  # the stand-ins count the signal in their handler; give them a beat
    stop.set()
    thread.join(5)
    assert sup.stop().queries == 10 + 20 + 2  # one SIGHUP each


def test_quick_deaths_back_off_up_to_the_bound(supervisor):
    sup = supervisor(1)
    sup.start(threading.Event())
    worker = sup.workers[0]
    delays = []
    for _ in range(10):
        worker.proc.kill()
        worker.proc.wait()
        now = time.monotonic()
        sup.tend(now)  # notices the death, schedules the restart
        delays.append(worker.restart_at - now)
        sup.tend(worker.restart_at)  # due: started again
        assert worker.proc is not None
    minimum = procs.RESTART_MIN_DELAY
    assert delays[:3] == pytest.approx([minimum, 2 * minimum, 4 * minimum])
    assert delays[-1] == pytest.approx(procs.RESTART_MAX_DELAY)
    assert worker.restarts == 10
    sup.stop()


def test_a_worker_that_lived_long_restarts_after_the_shortest_delay(supervisor):
    sup = supervisor(1)
    sup.start(threading.Event())
    worker = sup.workers[0]
    worker.quick_deaths = 5
    worker.proc.kill()
    worker.proc.wait()
    now = worker.started + procs.RESTART_QUICK_DEATH + 1

    sup.tend(now)

    assert worker.restart_at - now == pytest.approx(procs.RESTART_MIN_DELAY)
    sup.stop()


@pytest.mark.parametrize(("value", "expected"), [("1", 1), (" 4 ", 4), (2, 2)])
def test_processes_parse_takes_a_number(value, expected):
    assert procs.processes_parse(value) == expected


def test_processes_parse_auto_is_the_cpus_this_process_may_use():
    assert procs.processes_parse("AUTO") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-1", "many", "", "257"])
def test_processes_parse_refuses_anything_else_naming_the_setting(value):
    with pytest.raises(ValueError, match="GLORYHOLE_DNS_PROCESSES"):
        procs.processes_parse(value)


def test_a_worker_reports_one_json_line(capsys):
    procs.report("stopped", queries=3)
    assert json.loads(capsys.readouterr().out) == {"event": "stopped", "queries": 3}


def test_the_parent_watch_stops_a_worker_whose_supervisor_is_gone():
    stop = threading.Event()
    procs.parent_watch(os.getppid() + 10**6, stop, interval=0.01)  # a pid that is not our parent
    assert stop.wait(2)


def test_worker_argv_reexecutes_this_manage_py_as_worker_k():
    argv = procs.worker_argv(1, 2, "127.0.0.1", 5300, 10.0)
    assert argv[0] == sys.executable and argv[1].endswith("manage.py")
    assert argv[2:] == ["rundns", "--host", "127.0.0.1", "--port", "5300", "--wait-report-interval", "10.0",
                        "--worker", "1", "--worker-of", "2", "--supervisor-pid", str(os.getpid())]  # fmt: skip


# --- the worker's runner ---


def test_a_worker_runner_shares_the_port_beats_as_name_slash_k_and_leaves_shared_jobs_to_worker_0(
    engine_config, settings
):
    settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS = 6
    config = dataclasses.replace(engine_config, engine_name="dns1", metrics_port=9200)

    one, zero, single = (EngineRunner(config, worker=1, processes=2), EngineRunner(config, worker=0, processes=2),
                         EngineRunner(config))  # fmt: skip

    assert (one.heartbeat_name, zero.heartbeat_name, single.heartbeat_name) == ("dns1/1", "dns1/0", "dns1")
    assert one.name == "dns1"  # the query log's engine column: one engine
    assert (one.config.metrics_port, zero.config.metrics_port, single.config.metrics_port) == (9201, 9200, 9200)
    assert one.engine.server.reuse_port and zero.engine.server.reuse_port and not single.engine.server.reuse_port
    assert one.engine.updater is None and zero.engine.updater is not None


@pytest.mark.django_db
def test_worker_0_deletes_the_rows_no_worker_of_this_run_will_update(engine_config):
    from django.utils import timezone

    now = timezone.now()
    for name in ("dns1", "dns1/0", "dns1/1", "dns1/2", "dns1/x", "dns10/5", "other/3"):
        EngineStatus.objects.create(name=name, hostname="h", pid=1, started_at=now, heartbeat_at=now)
    runner = EngineRunner(dataclasses.replace(engine_config, engine_name="dns1"), worker=0, processes=2)

    runner.stale_worker_rows_delete()

    assert sorted(EngineStatus.objects.values_list("name", flat=True)) == [
        "dns1/0", "dns1/1", "dns1/x", "dns10/5", "other/3",
    ]  # fmt: skip


def test_signal_events_sets_the_event_of_the_signal_that_came():
    from dnsengine.runtime.signals import signal_events

    stop, hup = threading.Event(), threading.Event()
    previous = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    try:
        signal_events({signal.SIGUSR1: stop, signal.SIGUSR2: hup})
        os.kill(os.getpid(), signal.SIGUSR2)
        assert hup.wait(5) and not stop.is_set()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.wait(5)
    finally:
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGUSR2, previous[1])


def test_a_port_held_by_another_socket_is_refused_before_any_worker_starts():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        # Even one that allows SO_REUSEPORT: a worker would join it and share the port.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        port = other.getsockname()[1]
        with pytest.raises(OSError):
            procs.port_in_use_check("127.0.0.1", port)
    procs.port_in_use_check("127.0.0.1", port)  # free again


@pytest.mark.django_db
def test_a_single_process_deletes_the_rows_of_an_earlier_run_with_workers(engine_config):
    from django.utils import timezone

    now = timezone.now()
    for name in ("dns1", "dns1/0", "dns1/1", "dns1/x", "dns10/5"):
        EngineStatus.objects.create(name=name, hostname="h", pid=1, started_at=now, heartbeat_at=now)

    EngineRunner(dataclasses.replace(engine_config, engine_name="dns1")).stale_worker_rows_delete()

    assert sorted(EngineStatus.objects.values_list("name", flat=True)) == ["dns1", "dns1/x", "dns10/5"]
