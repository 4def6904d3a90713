"""`manage.py rundns` as a subprocess on loopback, sharing the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

from django.db import connection

from gloryhole_site.testing import ROOT


def shared_database_url() -> str:
    """DATABASE_URL of the database this test runs on, for a subprocess that must share it."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        user += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "localhost"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{user}{'@' if user else ''}{host}{port}/{quote(db['NAME'], safe='')}"


def rundns_env(upstream_address: str, **extra: str) -> dict[str, str]:
    """The environment for a rundns subprocess on the test database, forwarding to a fake upstream."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=shared_database_url(),
        GLORYHOLE_UPSTREAMS=upstream_address,
        GLORYHOLE_METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_rundns(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """Start `manage.py rundns` on a free loopback port; returns the process (its "listening on" line in
    ``proc.listening``) and the port."""
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
            proc.listening = line.rstrip("\n")
            return proc, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
    proc.wait(timeout=10)
    raise AssertionError(f"rundns exited with {proc.returncode} before listening:\n{''.join(seen)}")


def run_rundns(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run `manage.py rundns` on loopback, port 0, to its end (a refused start); at most a minute."""
    return subprocess.run(
        [sys.executable, "manage.py", "rundns", "--host", "127.0.0.1", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
