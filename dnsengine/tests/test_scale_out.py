"""Two `rundns` processes on one database: the scale-out path (docs/scale-out.md).

Runs in both halves of `make test`: on PostgreSQL, which is what several engines
are meant to share, and on SQLite in WAL mode, which two engines on one machine
can share too.
"""

from __future__ import annotations

import signal
import time

import dns.exception
import pytest

from dnsengine.models import BlockedDomain, Blocklist, EngineStatus
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import Client, answers
from gloryhole_site.testing.rundns import rundns_env, start_rundns
from querylog.models import QueryLog

pytestmark = pytest.mark.integration


def _wait_for(predicate, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until predicate() was true, or None after timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    return None


def _blocked(port: int) -> bool:
    try:
        return answers(Client(port).query("ads.example.net", timeout=0.5)) == ["A 0.0.0.0"]
    except dns.exception.Timeout:
        return False


@pytest.mark.django_db(transaction=True)
def test_two_engines_share_one_database_each_with_its_own_status_row_and_log_tag(upstream, tmp_path):
    procs = {}
    try:
        for name in ("engine-a", "engine-b"):
            env = rundns_env(
                upstream.address,
                GLORYHOLE_ENGINE_NAME=name,
                GLORYHOLE_ENV_FILE=str(tmp_path / "none.env"),
                GLORYHOLE_HEARTBEAT_INTERVAL="0.5",
                GLORYHOLE_BLOCKLIST_UPDATE_HOURS="0",  # no downloads from a test
            )
            procs[name] = start_rundns(env)  # (process, port); the reload interval is the default

        # Each engine upserts its own EngineStatus row.
        assert _wait_for(lambda: EngineStatus.objects.filter(name__in=procs).count() == 2, timeout=10) is not None
        for name, (proc, _) in procs.items():
            assert EngineStatus.objects.get(name=name).pid == proc.pid

        # An admin change reaches both engines within 5 seconds.
        assert not any(_blocked(port) for _, port in procs.values())
        blocklist = Blocklist.objects.create(name="admin")
        BlockedDomain.objects.create(blocklist=blocklist, domain="ads.example.net")
        config_generation_bump()
        for name, (_, port) in procs.items():
            took = _wait_for(lambda port=port: _blocked(port), timeout=5)
            assert took is not None, f"{name} did not block ads.example.net within 5 s"

        # Queries to both land in the one log, each tagged with the engine that answered it.
        sent = {}
        for i, (name, (_, port)) in enumerate(procs.items()):
            names = [f"host{k}.engine{i}.example.com" for k in range(20)]
            for qname in names:
                assert answers(Client(port).query(qname)) == ["A 192.0.2.1"]
            sent[name] = names
    finally:
        outputs = {}
        for proc, _ in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, (proc, _) in procs.items():
            outputs[name] = proc.communicate(timeout=60)[0]
    for name, (proc, _) in procs.items():
        assert proc.returncode == 0, outputs[name]
        logged = set(
            QueryLog.objects.filter(engine=name, domain__endswith=".example.com").values_list("domain", flat=True)
        )
        assert set(sent[name]) <= logged
        other = next(n for n in procs if n != name)
        assert not logged & set(sent[other])
