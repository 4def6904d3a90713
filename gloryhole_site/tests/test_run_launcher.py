"""devtools/run.py: the `make run` launcher stops everything together."""

from __future__ import annotations

import subprocess
import sys
import threading

from devtools.run import commands, supervise


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_when_one_child_exits_the_other_is_stopped_and_its_status_reported():
    quick = child("import sys; sys.exit(3)")
    slow = child("import time; time.sleep(60)")
    status = supervise({"quick": quick, "slow": slow}, threading.Event())
    assert status == 3
    assert slow.poll() is not None  # terminated, not left running


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
