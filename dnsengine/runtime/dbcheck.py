"""Is the database there, migrated and answering? Asked by `rundns` before it serves.

An engine that serves without its configuration answers every blocked name, so
a database that is missing or not migrated stops start-up (DatabaseMissing,
an ImproperlyConfigured), and one that cannot be reached yet is waited for
(DatabaseUnreachable) by the caller.

A SQLite file that does not exist is reported before anything connects:
connecting would create an empty one, and the next start would find a
database that exists but has no tables.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.db.migrations.executor import MigrationExecutor


class DatabaseMissing(ImproperlyConfigured):
    """The database does not exist or is not migrated: a configuration error."""


class DatabaseUnreachable(Exception):
    """The database did not answer (a server down or starting, a locked file): try again later."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (libpq's span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def database_label(alias: str = "default") -> str:
    """Which database, for messages: the SQLite file, or PostgreSQL's db on host:port."""
    db = connections[alias].settings_dict
    if connections[alias].vendor == "sqlite":
        return f"SQLite database {db['NAME']}"
    where = db.get("HOST") or "localhost"
    if db.get("PORT"):
        where += f":{db['PORT']}"
    return f"{connections[alias].vendor} database {db['NAME']!r} on {where}"


def _setting_hint() -> str:
    # The default database lives in the data folder; name the variable the user set.
    return "check DATABASE_URL" if os.environ.get("DATABASE_URL") else "check GLORYHOLE_DATA_DIR (or set DATABASE_URL)"


def _sqlite_file_check(name: str) -> None:
    if name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if not path.parent.is_dir():
        raise DatabaseMissing(
            f"the folder {path.parent} of the SQLite database does not exist: {_setting_hint()}, "
            "then run `manage.py migrate`"
        )
    if not path.exists():
        raise DatabaseMissing(
            f"the SQLite database {path} does not exist: run `manage.py migrate` to create it, or {_setting_hint()}"
        )


# PostgreSQL refusals that no amount of waiting fixes: a database or role that does not
# exist (a typo in DATABASE_URL), a wrong password, a client the server does not admit.
# libpq has no error code for them at connect time, only the server's text, which a
# server set to another language words differently: that case is waited for like a server that is down.
_PERMANENT_REFUSALS = ("does not exist", "password authentication failed", "no pg_hba.conf entry")


def _is_transient(vendor: str, exc: DatabaseError) -> bool:
    """Whether waiting can fix it.

    On SQLite only a lock can pass by itself; anything else (not a database,
    no permission) needs a person. On PostgreSQL a server that is down,
    starting or out of connection slots is waited for.
    """
    message = str(exc).lower()
    if vendor == "sqlite":
        return "locked" in message or "busy" in message
    if any(refusal in message for refusal in _PERMANENT_REFUSALS):
        return False
    return isinstance(exc, (OperationalError, InterfaceError))


def database_check(alias: str = "default") -> None:
    """Return if the database answers and every migration is applied.

    Raises DatabaseMissing (does not exist, not migrated, not a database) or
    DatabaseUnreachable (may answer later). Leaves no connection open.
    """
    connection = connections[alias]
    if connection.vendor == "sqlite":
        _sqlite_file_check(connection.settings_dict["NAME"])
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        applied = len(executor.loader.applied_migrations)
    except DatabaseError as exc:
        reason = one_line(exc)
        if _is_transient(connection.vendor, exc):
            raise DatabaseUnreachable(f"{database_label(alias)}: {reason}") from exc
        raise DatabaseMissing(f"{database_label(alias)}: {reason}: {_setting_hint()}") from None
    finally:
        connection.close()
    if not plan:
        return
    if not applied:
        raise DatabaseMissing(
            f"the {database_label(alias)} has no Glory-Hole tables (no migration applied): "
            f"run `manage.py migrate`, or {_setting_hint()}"
        )
    pending = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:3])
    more = f" and {len(plan) - 3} more" if len(plan) > 3 else ""
    raise DatabaseMissing(
        f"the {database_label(alias)} lacks {len(plan)} migration{'s' if len(plan) > 1 else ''} "
        f"({pending}{more}): run `manage.py migrate`"
    )
