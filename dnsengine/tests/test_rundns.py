"""`manage.py rundns` as a user runs it: a subprocess, signals, bad settings."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from dnsengine.core import compiled
from gloryhole_site.testing.dnsclient import Client, answers
from gloryhole_site.testing.rundns import run_rundns, rundns_env, start_rundns

pytestmark = pytest.mark.integration


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
@pytest.mark.parametrize("no_extensions", ["1", None])
def test_the_listening_line_says_which_core_runs(upstream, no_extensions):
    env = rundns_env(upstream.address)
    if no_extensions:
        env["GLORYHOLE_NO_EXTENSIONS"] = no_extensions
    proc, _port = start_rundns(env)
    try:
        line = proc.listening
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    if no_extensions:
        assert line.endswith("; core pure Python (GLORYHOLE_NO_EXTENSIONS=1)")
    else:  # the subprocess sees the files and environment this test does
        assert line.endswith(f"; {compiled.summary()}")


def the_one_line(result: subprocess.CompletedProcess) -> str:
    """What a refused start printed, which must be a single line besides INFO log records.

    (A port is found taken only after the configuration is loaded, which logs a line.)
    """
    lines = [line for line in (result.stdout + result.stderr).splitlines() if " INFO " not in line]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GLORYHOLE_BLOCKING_MODE", "sometimes"),
        ("GLORYHOLE_UPSTREAMS", "dns.example.com"),
        ("GLORYHOLE_UPSTREAM_TIMEOUT", "fast"),
        ("GLORYHOLE_CACHE_SIZE", "-1"),
        ("LOG_LEVEL", "LOUD"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("TIME_ZONE", "../../etc/passwd"),
        ("DEBUG", "maybe"),
        ("GLORYHOLE_FAIL_OPEN", "sometimes"),
        ("GLORYHOLE_NO_EXTENSIONS", "yes"),
        ("GLORYHOLE_METRICS_HOST", "metrics.invalid"),
        ("GLORYHOLE_ENGINE_NAME", "e" * 201),
        ("GLORYHOLE_DNS_PROCESSES", "many"),
        ("GLORYHOLE_DATA_DIR", "/proc/gloryhole"),  # the secret key cannot be created there
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(upstream, variable, value):
    # A metrics port of its own, so that GLORYHOLE_METRICS_HOST is used.
    result = run_rundns(rundns_env(upstream.address, GLORYHOLE_METRICS_PORT=str(free_port()), **{variable: value}))

    line = the_one_line(result)
    assert result.returncode != 0
    assert variable in line
    assert value[:50] in line or variable == "GLORYHOLE_ENGINE_NAME"
    assert "Traceback" not in line


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_a_metrics_port_in_use_stops_start_up_with_one_line_naming_the_port_and_setting(upstream):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_rundns(rundns_env(upstream.address, GLORYHOLE_METRICS_PORT=str(port)))

    line = the_one_line(result)
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in line
    assert "GLORYHOLE_METRICS_PORT" in line
    assert "in use" in line


@pytest.mark.django_db(transaction=True)
def test_a_dns_port_in_use_stops_start_up_with_one_line_naming_the_port_and_setting(upstream):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]

        result = run_rundns(rundns_env(upstream.address), "--host", "127.0.0.1", "--port", str(port))

    line = the_one_line(result)
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in line
    assert "GLORYHOLE_DNS_PORT" in line
