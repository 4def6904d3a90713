"""GLORYHOLE_DATA_DIR is 0700 and the SQLite files 0600, on a fresh install and after an old one.

Each test runs manage.py in a subprocess on a fresh data folder under the usual umask
(022), so a file left to the umask would come out 0644 and fail.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

pytestmark = pytest.mark.integration

# Opens the database (WAL: the -wal and -shm files exist while it is open), writes, and
# lists every file's mode while the connection is still open.
SHOW_MODES = """
import json, os, stat
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone
Session.objects.update_or_create(session_key="k" * 32, defaults={"session_data": "x", "expire_date": timezone.now()})
data = settings.DATA_DIR
modes = {".": stat.S_IMODE(os.stat(data).st_mode)}
modes.update({name: stat.S_IMODE(os.stat(data / name).st_mode) for name in os.listdir(data)})
print(json.dumps(modes))
"""


def manage(tmp_path: Path, *args: str, secret_key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(GLORYHOLE_DATA_DIR=str(tmp_path / "data"), GLORYHOLE_ENV_FILE=str(tmp_path / "none.env"))
    if secret_key:
        env["SECRET_KEY"] = secret_key
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert result.returncode == 0, result.stderr
    return result


def modes_while_open(tmp_path: Path) -> tuple[dict[str, int], str]:
    result = manage(tmp_path, "shell", "-c", SHOW_MODES)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_migrate_makes_a_private_folder_and_database(tmp_path):
    manage(tmp_path, "migrate", "--noinput", "-v0")
    data = tmp_path / "data"
    assert mode(data) == 0o700
    assert mode(data / "gloryhole.sqlite3") == 0o600
    assert mode(data / ".secret_key") == 0o600
    modes, _ = modes_while_open(tmp_path)
    assert modes["gloryhole.sqlite3-wal"] == 0o600
    assert modes["gloryhole.sqlite3-shm"] == 0o600
    assert {name: oct(m) for name, m in modes.items() if m & 0o077} == {}


def test_the_folder_is_private_when_the_secret_key_comes_from_the_environment(tmp_path):
    manage(tmp_path, "migrate", "--noinput", "-v0", secret_key="from-the-environment-" * 3)
    data = tmp_path / "data"
    assert mode(data) == 0o700
    assert mode(data / "gloryhole.sqlite3") == 0o600
    assert not (data / ".secret_key").exists()


def test_an_older_install_is_tightened_at_start_and_says_so_once(tmp_path):
    manage(tmp_path, "migrate", "--noinput", "-v0")
    data = tmp_path / "data"
    database = data / "gloryhole.sqlite3"
    data.chmod(0o755)
    database.chmod(0o644)
    for leftover in ("gloryhole.sqlite3-wal", "gloryhole.sqlite3-shm"):
        (data / leftover).touch(mode=0o644)

    modes, log = modes_while_open(tmp_path)

    assert modes["."] == 0o700
    assert {name: oct(m) for name, m in modes.items() if name != "." and m != 0o600} == {}
    lines = [line for line in log.splitlines() if "owner only" in line]
    assert len(lines) == 4, log  # the folder, the database, its -wal and -shm
    assert "GLORYHOLE_DATA_DIR" in lines[0] and "0755" in lines[0]

    _, log_again = modes_while_open(tmp_path)
    assert "owner only" not in log_again
