"""The query log's settings: each GLORYHOLE_QUERY_LOG_* variable's parser, default and bounds.

This table is the one place those are written down. ``gloryhole_site/settings.py``
reads every row at start-up (``GLORYHOLE_QUERY_LOG_BUFFER = query_log.BUFFER.read()``), and
``QueryLogConfig.from_environ`` reads the logger's rows again on SIGHUP, with the
same bounds, so a bad value raises there too instead of slipping into a running
engine. settings.py imports this module while Django is being configured: it
imports nothing of this project but the environment readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from gloryhole_site.env import EnvSetting, env_bool, env_float, env_int, env_str

MODES = ("pool", "process", "thread")


def mode_check(value: str, name: str = "GLORYHOLE_QUERY_LOG_MODE") -> str:
    """The mode, lower-cased; ImproperlyConfigured for one that is not in MODES."""
    mode = value.strip().lower()
    if mode not in MODES:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {', '.join(MODES)}")
    return mode


# The table's rows; the class is shared with the DNS settings (gloryhole_site.dns_env).
Setting = EnvSetting

ENABLED = Setting("GLORYHOLE_QUERY_LOG_ENABLED", env_bool, True)
# pool (bounded queue + writer threads), process (the same queue, written by child processes)
# or thread (one thread per query, the baseline)
MODE = Setting("GLORYHOLE_QUERY_LOG_MODE", env_str, "pool", check=mode_check)
BUFFER = Setting("GLORYHOLE_QUERY_LOG_BUFFER", env_int, 50000, minimum=1, maximum=10_000_000)
WORKERS = Setting("GLORYHOLE_QUERY_LOG_WORKERS", env_int, 1, minimum=1, maximum=64)
BATCH = Setting("GLORYHOLE_QUERY_LOG_BATCH", env_int, 2000, minimum=1, maximum=100000)
FLUSH_INTERVAL = Setting("GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL", env_float, 0.5, minimum=0.01, maximum=60)
# Rollup tables for the dashboard, written in the same transaction as each batch.
ROLLUPS = Setting("GLORYHOLE_QUERY_LOG_ROLLUPS", env_bool, True)
# How long rundns waits on stop for queued entries to be written.
CLOSE_TIMEOUT = Setting("GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT", env_float, 30.0, minimum=0, maximum=3600)
# Days of history kept; 0 keeps everything.
RETENTION_DAYS = Setting("GLORYHOLE_QUERY_LOG_RETENTION_DAYS", env_int, 7, minimum=0, maximum=3650)
# Seconds between retention purges in the engine.
PURGE_INTERVAL = Setting("GLORYHOLE_QUERY_LOG_PURGE_INTERVAL", env_float, 3600.0, minimum=10, maximum=604800)
# Days of the dashboard's rollups kept; 0 keeps everything. Not re-read on SIGHUP.
ROLLUP_RETENTION_DAYS = Setting("GLORYHOLE_ROLLUP_RETENTION_DAYS", env_int, 365, minimum=0, maximum=3650)

QUERY_LOG_SETTINGS: tuple[Setting, ...] = (
    ENABLED, MODE, BUFFER, WORKERS, BATCH, FLUSH_INTERVAL, ROLLUPS, CLOSE_TIMEOUT, RETENTION_DAYS, PURGE_INTERVAL,
)  # fmt: skip


@dataclass(slots=True, frozen=True)
class QueryLogConfig:
    """What the query logger is built from; equal configs build the same logger."""

    enabled: bool = ENABLED.default
    mode: str = MODE.default
    buffer_size: int = BUFFER.default
    workers: int = WORKERS.default
    batch_size: int = BATCH.default
    flush_interval: float = FLUSH_INTERVAL.default
    rollups: bool = ROLLUPS.default

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            mode_check(self.mode, MODE.name)

    @classmethod
    def from_settings(cls) -> QueryLogConfig:
        return cls(
            enabled=settings.GLORYHOLE_QUERY_LOG_ENABLED,
            mode=settings.GLORYHOLE_QUERY_LOG_MODE.strip().lower(),
            buffer_size=settings.GLORYHOLE_QUERY_LOG_BUFFER,
            workers=settings.GLORYHOLE_QUERY_LOG_WORKERS,
            batch_size=settings.GLORYHOLE_QUERY_LOG_BATCH,
            flush_interval=settings.GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL,
            rollups=settings.GLORYHOLE_QUERY_LOG_ROLLUPS,
        )

    @classmethod
    def from_environ(cls, base: QueryLogConfig | None = None) -> QueryLogConfig:
        """Re-read the logger's GLORYHOLE_QUERY_LOG_* variables from os.environ (for SIGHUP).

        settings.py read them once at import; a variable that is unset now keeps the
        value the process started with, or ``base``'s (rundns passes the settings page's).
        """
        base = base or cls.from_settings()
        return cls(
            enabled=ENABLED.read(base.enabled),
            mode=MODE.read(base.mode).strip().lower(),
            buffer_size=BUFFER.read(base.buffer_size),
            workers=WORKERS.read(base.workers),
            batch_size=BATCH.read(base.batch_size),
            flush_interval=FLUSH_INTERVAL.read(base.flush_interval),
            rollups=ROLLUPS.read(base.rollups),
        )
