"""gloryhole_site/run.py: the `make run` launcher stops everything together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from gloryhole_site.run import commands, prepare_steps, supervise, without_traceback
from gloryhole_site.testing import ROOT


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.mark.integration
def test_when_one_child_exits_the_other_is_stopped_and_its_status_reported():
    quick = child("import sys; sys.exit(3)")
    slow = child("import time; time.sleep(60)")
    status = supervise({"quick": quick, "slow": slow}, threading.Event())
    assert status == 3
    assert slow.poll() is not None  # terminated, not left running


@pytest.mark.integration
def test_a_stop_signal_stops_every_child_with_sigterm():
    stop = threading.Event()
    a = child("import time; time.sleep(60)")
    b = child("import time; time.sleep(60)")
    stop.set()  # what the SIGINT/SIGTERM handler does
    assert supervise({"a": a, "b": b}, stop) == 0
    assert a.returncode == b.returncode == -15


def test_it_runs_the_engine_and_gunicorn_with_the_given_addresses():
    import argparse

    cmds = commands(argparse.Namespace(dns_host="127.0.0.1", dns_port=5399, web="127.0.0.1:8099", workers=3))
    assert cmds["rundns"][-4:] == ["--host", "127.0.0.1", "--port", "5399"]
    gunicorn = cmds["gunicorn"]
    assert "gloryhole_site.wsgi" in gunicorn
    assert gunicorn[gunicorn.index("--bind") + 1] == "127.0.0.1:8099"
    assert gunicorn[gunicorn.index("--workers") + 1] == "3"


def test_the_admin_account_is_the_last_step_and_migrate_is_quiet():
    steps = prepare_steps("127.0.0.1:8000")

    assert [step[2] for step in steps] == ["migrate", "collectstatic", "ensureadmin"]
    assert steps[0][-2:] == ["--verbosity", "0"]
    assert steps[-1][-2:] == ["--login-url", "http://127.0.0.1:8000/"]


def test_a_failed_step_shows_the_exception_on_one_line_without_the_traceback():
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "manage.py", line 22, in <module>\n'
        "    main()\n"
        "django.db.utils.OperationalError: connection failed: port 1 failed: Connection refused\n"
        "\tIs the server running on that host and accepting TCP/IP connections?\n"
    )

    assert without_traceback(stderr) == (
        "django.db.utils.OperationalError: connection failed: port 1 failed: Connection refused "
        "Is the server running on that host and accepting TCP/IP connections?"
    )
    assert without_traceback("configuration error: LOG_LEVEL='LOUD': use one of ...\n") == (
        "configuration error: LOG_LEVEL='LOUD': use one of ..."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_a_first_run_shows_the_password_box_last_before_the_engine_and_web_start(tmp_path, upstream):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GLORYHOLE_ADMIN_PASSWORD")}
    env.update(
        GLORYHOLE_DATA_DIR=str(tmp_path),
        GLORYHOLE_UPSTREAMS=upstream.address,
        GLORYHOLE_METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gloryhole_site.run", "--dns-port", str(free_port()),
         "--web", f"127.0.0.1:{free_port()}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("listening on" in line for line in lines) and time.monotonic() < deadline:
            assert proc.poll() is None, "\n".join(lines)
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)

    output = "\n".join(lines)
    box = [i for i, line in enumerate(lines) if line.startswith("+--")]
    listening = next(i for i, line in enumerate(lines) if "listening on" in line)
    assert len(box) == 2, output
    assert lines[: box[0]] == ["[run] preparing: migrate, collectstatic, ensureadmin"], output
    assert box[1] < listening
    assert any("password:" in line for line in lines[box[0] : box[1]])
    assert "Applying" not in output
