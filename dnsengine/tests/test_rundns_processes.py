"""`rundns --processes 2` as a user runs it: two engine workers on one port, one supervisor.

The workers share the test database (SQLite in WAL mode or PostgreSQL), as the
engines of test_scale_out do.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import dns.exception
import dns.message
import dns.query
import pytest
from django.urls import reverse

from dnsengine.models import EngineStatus
from gloryhole_site.testing.rundns import run_rundns, rundns_env, start_rundns
from querylog.models import QueryLog

pytestmark = pytest.mark.integration

NAME = "procs"


def _wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def _rows() -> dict[str, EngineStatus]:
    return {row.name: row for row in EngineStatus.objects.filter(name__startswith=f"{NAME}/")}


def _start(upstream, tmp_path):
    env = rundns_env(
        upstream.address,
        GLORYHOLE_ENGINE_NAME=NAME,
        GLORYHOLE_DNS_PROCESSES="2",
        GLORYHOLE_ENV_FILE=str(tmp_path / "none.env"),
        GLORYHOLE_HEARTBEAT_INTERVAL="0.3",
    )
    proc, port = start_rundns(env)
    assert _wait_for(lambda: set(_rows()) == {f"{NAME}/0", f"{NAME}/1"}, timeout=15), _rows()
    return proc, port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is gone) serves nothing either.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _query(port: int, name: str, *, tcp: bool = False) -> list[str]:
    query = dns.message.make_query(name, "A")
    reply = (dns.query.tcp if tcp else dns.query.udp)(query, "127.0.0.1", port=port, timeout=3)
    return [item.to_text() for rrset in reply.answer for item in rrset]


@pytest.mark.django_db(transaction=True)
def test_two_workers_answer_on_one_port_and_a_sigterm_drains_both(upstream, tmp_path, viewer_web):
    proc, port = _start(upstream, tmp_path)
    try:
        # Each query from a fresh UDP socket (a new source port): the kernel's hash
        # spreads them over both workers' sockets.
        for i in range(80):
            assert _query(port, f"u{i}.example.com") == ["192.0.2.1"]
        for i in range(10):
            assert _query(port, f"t{i}.example.com", tcp=True) == ["192.0.2.1"]
        # Both workers answered some: their heartbeat rows count queries.
        assert _wait_for(lambda: sum(r.queries_total for r in _rows().values()) == 90, timeout=10), _rows()
        assert all(row.queries_total > 0 for row in _rows().values()), _rows()
        assert len({row.pid for row in _rows().values()}) == 2

        # The status page: one engine, its two workers listed, their counts summed.
        html = viewer_web.get(reverse("engine-status")).content.decode()
        assert html.count(f'data-engine="{NAME}"') == 1
        assert f'data-process="{NAME}/0"' in html and f'data-process="{NAME}/1"' in html
        engines = viewer_web.get(reverse("api-status")).json()["engines"]
        (engine,) = [e for e in engines if e["name"] == NAME]
        assert engine["processes"] == 2
        assert engine["queries_total"] == 90
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, rest
    said = re.search(r"stopped after (\d+) queries; query log: (\d+) written, 0 dropped, 0 unwritten", rest)
    assert said, rest
    assert int(said.group(1)) == 90 and int(said.group(2)) == 90, rest
    assert QueryLog.objects.filter(engine=NAME, domain__endswith=".example.com").count() == 90
    assert sum(row.written for row in _rows().values()) == 90


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_restarted_while_the_other_serves(upstream, tmp_path):
    proc, port = _start(upstream, tmp_path)
    try:
        killed = _rows()[f"{NAME}/1"].pid
        survivor = _rows()[f"{NAME}/0"].pid
        os.kill(killed, signal.SIGKILL)
        assert _wait_for(lambda: not _alive(killed), timeout=5)
        # The port keeps answering meanwhile (worker 0's socket takes all of it). A query
        # the kernel hands to the restarted worker's socket in the moment between its bind
        # and its first read waits there; on a loaded box that can outlast one 3 s try, so
        # each query gets the retry a stub resolver would make. Unanswered twice fails.
        for i in range(20):
            name = f"k{i}.example.com"
            try:
                answer = _query(port, name)
            except dns.exception.Timeout:
                answer = _query(port, name)
            assert answer == ["192.0.2.1"]
        assert _wait_for(lambda: _rows()[f"{NAME}/1"].pid not in (killed, survivor), timeout=20), _rows()
        assert _alive(_rows()[f"{NAME}/1"].pid)
        assert _rows()[f"{NAME}/0"].pid == survivor
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, rest
    assert "1 restarts" in rest
    assert "no counts from worker(s) 1" in rest  # its first process was killed before it could say


@pytest.mark.django_db(transaction=True)
def test_workers_exit_when_the_supervisor_is_killed(upstream, tmp_path):
    proc, _port = _start(upstream, tmp_path)
    pids = [row.pid for row in _rows().values()]
    try:
        proc.kill()
        proc.wait(timeout=5)
        assert _wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=10), pids
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stdout.close()


@pytest.mark.django_db(transaction=True)
def test_a_port_another_engine_shares_with_so_reuseport_is_refused_not_joined(upstream):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]

        result = run_rundns(rundns_env(upstream.address, GLORYHOLE_DNS_PROCESSES="2"), "--port", str(port))

    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if " INFO " not in line]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and "GLORYHOLE_DNS_PORT" in lines[0]
