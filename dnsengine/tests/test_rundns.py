"""`manage.py rundns` as a user runs it: a subprocess, signals, bad settings."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from conftest import Client
from dnsengine.tests.helpers import ROOT, answers, rundns_env, start_rundns


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_it_serves_until_a_signal_then_stops_cleanly(upstream, signum):
    proc, port = start_rundns(rundns_env(upstream.address))
    try:
        assert answers(Client(port).query("example.com")) == ["A 192.0.2.1"]
        assert answers(Client(port).query("example.com", tcp=True)) == ["A 192.0.2.1"]
    finally:
        proc.send_signal(signum)
        rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, rest
    assert "stopped after 2 queries" in rest


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GLORYHOLE_BLOCKING_MODE", "sometimes"),
        ("GLORYHOLE_UPSTREAMS", "dns.example.com"),
        ("GLORYHOLE_UPSTREAM_TIMEOUT", "fast"),
        ("GLORYHOLE_CACHE_SIZE", "-1"),
    ],
)
def test_a_bad_setting_stops_start_up_with_a_message_naming_it(upstream, variable, value):
    env = rundns_env(upstream.address, **{variable: value})
    result = subprocess.run(
        [sys.executable, "manage.py", "rundns", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
