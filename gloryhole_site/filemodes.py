"""The data folder and the SQLite files are readable by their owner alone.

They hold the secret key, password hashes, sessions and every query of every
client. SQLite creates its files under the process umask (0644 with the usual
022) and its -wal and -shm files with the database file's mode, so the database
is set to 0600 as soon as a connection has opened it; the folder, 0700, keeps
anyone else out in the moment between. An install made before this, with looser
modes, is tightened at start and says so once (the next start finds nothing to do).
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def tighten(path: Path, mode: int) -> int | None:
    """Take group and other bits off `path`; the mode it had when it changed, else None.

    Only removes bits (never adds any to a file someone made read-only); a file that
    is missing or not ours is left alone with a warning rather than stopping the start.
    """
    try:
        old = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    new = old & mode
    if new == old:
        return None
    try:
        path.chmod(new)
    except OSError as exc:
        log.warning("cannot make %s private (mode %04o): %s", path, old, exc)
        return None
    return old


def sqlite_files(database: str) -> list[Path]:
    """The database file and its companions; nothing for an in-memory database."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return []
    return [Path(f"{database}{suffix}") for suffix in SQLITE_SUFFIXES]


def make_data_dir_private() -> None:
    """GLORYHOLE_DATA_DIR: created 0700 when missing, tightened to 0700 when looser; logged when changed."""
    data_dir = Path(settings.DATA_DIR)
    if not data_dir.exists():
        try:
            data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create GLORYHOLE_DATA_DIR %s: %s", data_dir, exc)
        return
    old = tighten(data_dir, PRIVATE_DIR)
    if old is not None:
        log.warning("GLORYHOLE_DATA_DIR %s was mode %04o; now %04o (owner only)", data_dir, old, old & PRIVATE_DIR)


def make_sqlite_files_private(*, quiet: bool) -> None:
    """Every configured SQLite database and its -wal/-shm files to 0600."""
    for config in settings.DATABASES.values():
        if config.get("ENGINE", "").endswith("sqlite3"):
            tighten_sqlite(str(config.get("NAME") or ""), quiet=quiet)


def tighten_sqlite(database: str, *, quiet: bool) -> None:
    for path in sqlite_files(database):
        old = tighten(path, PRIVATE_FILE)
        if old is not None and not quiet:
            log.warning("%s was mode %04o; now %04o (owner only)", path, old, old & PRIVATE_FILE)


def on_connection_created(sender, connection, **kwargs) -> None:
    """connection_created: a database SQLite has just created is made private before anyone else looks.

    Quiet: a new file is created under the umask every time, which is nothing to report.
    """
    if connection.vendor == "sqlite":
        tighten_sqlite(str(connection.settings_dict.get("NAME") or ""), quiet=True)
