"""`manage.py rundns` with a database that is missing, not migrated or not answering.

Serving without the configuration means answering every blocked name, so a
missing or unmigrated database stops start-up with one line, and a database
that does not answer is waited for with nothing bound, unless
GLORYHOLE_FAIL_OPEN says to serve without lists meanwhile.
"""

from __future__ import annotations

import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gloryhole_site.testing import ROOT
from gloryhole_site.testing.dnsclient import Client, answers
from gloryhole_site.testing.rundns import run_rundns, rundns_env

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused(result: subprocess.CompletedProcess) -> str:
    """The one line of a refused start (no traceback), checked for a non-zero exit."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    return lines[0]


def sqlite_env(upstream, path: Path) -> dict[str, str]:
    return rundns_env(upstream.address, DATABASE_URL=f"sqlite:///{path}")


def test_a_sqlite_file_that_does_not_exist_stops_start_up_and_is_not_created(upstream, tmp_path):
    path = tmp_path / "gloryhole.sqlte3"  # the typo

    line = refused(run_rundns(sqlite_env(upstream, path)))

    assert str(path) in line
    assert "does not exist" in line
    assert "manage.py migrate" in line
    assert not path.exists()


def test_a_sqlite_folder_that_does_not_exist_stops_start_up_and_is_not_created(upstream, tmp_path):
    path = tmp_path / "no-such-folder" / "gloryhole.sqlite3"

    line = refused(run_rundns(sqlite_env(upstream, path)))

    assert str(path.parent) in line
    assert "does not exist" in line
    assert not path.parent.exists()


@pytest.mark.parametrize("content", ["empty", "other tables"])
def test_an_unmigrated_sqlite_file_stops_start_up(upstream, tmp_path, content):
    path = tmp_path / "gloryhole.sqlite3"
    path.touch(mode=0o600)  # as private as Glory-Hole keeps its own, or start-up says so first
    if content == "other tables":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (text)")

    line = refused(run_rundns(sqlite_env(upstream, path)))

    assert str(path) in line
    assert "no migration applied" in line
    assert "manage.py migrate" in line


def test_a_sqlite_file_with_a_migration_missing_stops_start_up_naming_it(upstream, tmp_path):
    path = tmp_path / "gloryhole.sqlite3"
    env = sqlite_env(upstream, path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    with sqlite3.connect(path) as db:
        (name,) = db.execute("SELECT name FROM django_migrations WHERE app = 'dnsengine' ORDER BY id DESC").fetchone()
        db.execute("DELETE FROM django_migrations WHERE app = 'dnsengine' AND name = ?", [name])

    line = refused(run_rundns(env))

    assert f"lacks 1 migration (dnsengine.{name})" in line
    assert "manage.py migrate" in line


def test_a_file_that_is_not_a_database_stops_start_up(upstream, tmp_path):
    path = tmp_path / "gloryhole.sqlite3"
    path.write_bytes(b"these are not the pages you are looking for\n" * 100)
    path.chmod(0o600)  # as private as Glory-Hole keeps its own, or start-up says so first

    line = refused(run_rundns(sqlite_env(upstream, path)))

    assert str(path) in line
    assert "not a database" in line


class Output:
    """A subprocess's lines, read on a thread, so a test can wait for one with a time bound."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, count: int = 1, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while len([line for line in self.seen if text in line]) < count:
            try:
                self.seen.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(
                    f"no {count} lines with {text!r} within {timeout} s:\n" + "\n".join(self.seen)
                ) from None
        return [line for line in self.seen if text in line]


def start_waiting_rundns(env: dict[str, str], dns_port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "rundns", "--host", "127.0.0.1", "--port", str(dns_port),
         "--wait-report-interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def assert_port_is_free(port: int) -> None:
    """Nobody has bound it: a client asking there is refused at once and tries another server."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))


def test_an_unreachable_database_is_waited_for_with_nothing_served_and_sigterm_stops_it_at_once(upstream):
    db_port, dns_port = free_port(), free_port()
    env = rundns_env(upstream.address, DATABASE_URL=f"postgres://x@127.0.0.1:{db_port}/x")
    proc = start_waiting_rundns(env, dns_port)
    output = Output(proc)
    try:
        waiting = output.wait_for("waiting for the database", count=3)
        assert_port_is_free(dns_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

    assert proc.returncode == 0
    assert output.wait_for("stopped before serving")
    for line in waiting:
        assert f"127.0.0.1:{db_port}" in line
        assert "DNS is not served" in line
    assert not [line for line in output.seen if "listening on" in line or "Traceback" in line]


def test_with_fail_open_an_unreachable_database_means_dns_without_lists_meanwhile(upstream):
    db_port, dns_port = free_port(), free_port()
    env = rundns_env(
        upstream.address,
        DATABASE_URL=f"postgres://x@127.0.0.1:{db_port}/x",
        GLORYHOLE_FAIL_OPEN="1",
        GLORYHOLE_QUERY_LOG_ENABLED="0",
    )
    proc = start_waiting_rundns(env, dns_port)
    output = Output(proc)
    try:
        warning = output.wait_for("GLORYHOLE_FAIL_OPEN")[0]
        output.wait_for("listening on")

        # On the bundled list, but nothing is loaded: forwarded.
        assert answers(Client(dns_port).query("doubleclick.net")) == ["A 192.0.2.1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    assert "WITHOUT block lists" in warning
    assert proc.returncode == 0
    assert not [line for line in output.seen if "Traceback" in line]
