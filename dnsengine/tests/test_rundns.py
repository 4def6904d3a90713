"""`manage.py rundns` as a user runs it: a subprocess, signals, bad settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from conftest import Client
from dnsengine.tests.helpers import answers

ROOT = Path(__file__).resolve().parents[2]


def rundns_env(upstream_address: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{connection.settings_dict['NAME']}",
        GLORYHOLE_UPSTREAMS=upstream_address,
        GLORYHOLE_METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_rundns(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "rundns", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "listening on" in line:
            port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
            return proc, port
    proc.wait(timeout=10)
    raise AssertionError(f"rundns exited with {proc.returncode} before listening:\n{''.join(seen)}")


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
