from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import dns.message
import dns.rcode
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def answers(reply: dns.message.Message) -> list[str]:
    """The answer section as sorted 'type value' strings."""
    return sorted(f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata}" for rrset in reply.answer for rdata in rrset)


def rcode(reply: dns.message.Message) -> str:
    return dns.rcode.to_text(reply.rcode())


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
    """Start `manage.py rundns` on a free loopback port; returns the process and the port."""
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
            return proc, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
    proc.wait(timeout=10)
    raise AssertionError(f"rundns exited with {proc.returncode} before listening:\n{''.join(seen)}")


class RecordingSink:
    """A query logger that keeps every entry and lets a test wait for them.

    The engine hands an entry over just after it sends the reply, so a test that
    has its answer may not see the entry yet: wait_for() and last_for() wait.
    """

    def __init__(self) -> None:
        self.entries = []
        self._changed = threading.Condition()

    def log_async(self, entry) -> bool:
        with self._changed:
            self.entries.append(entry)
            self._changed.notify_all()
        return True

    def wait_for(self, count: int, timeout: float = 5.0) -> list:
        """The entries, once there are at least `count` of them."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.entries) >= count, timeout), f"fewer than {count} entries"
            return list(self.entries)

    def last_for(self, domain: str, timeout: float = 5.0):
        """The newest entry for `domain`, waiting for one to come."""

        def find():
            return next((e for e in reversed(self.entries) if e.domain == domain), None)

        with self._changed:
            assert self._changed.wait_for(find, timeout), f"no log entry for {domain}"
            return find()


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
