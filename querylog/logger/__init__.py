"""The query logger: the DNS path hands it one entry per answered query and never waits.

Accounting: every entry handed to ``log_async`` ends in exactly one of *written*,
*dropped* (refused: queue full or logger closed), *unwritten* (accepted but given up
on: rejected by the database as invalid, or still queued when close() ran out of
time), or is forwarded to the logger that replaced this one (SIGHUP reconfigure).

Modules, in the order a reader needs them:

- ``config``: ``QueryLogConfig`` and the table of GLORYHOLE_QUERY_LOG_* settings
  (parser, default, bounds) that settings.py reads;
- ``pool``: ``QueryLogger``, the bounded queue and its writer threads (the default);
- ``writer``: ``QueryLogWriter``, which writes one batch (rows and rollups, one
  transaction), and ``Pacer`` for catching up on a backlog;
- ``base``: what the loggers share: retries, giving up, counters;
- ``counters``: the stats snapshot, histograms and the close report;
- ``baselines``: ``ThreadPerQueryLogger`` (mode ``thread``) and ``DisabledQueryLogger``;
- ``build``: the logger a config describes;
- ``swappable``: ``SwappableQueryLogger``, which the engine holds so SIGHUP can change
  mode, workers or buffer without losing queued entries.

The database helpers the writer builds on (statements, COPY, the SQLite write lock,
row conversions) are in ``querylog.db``.

Names are loaded on first use: settings.py imports ``querylog.logger.config`` while
Django is still being configured, which runs this file, and the loggers need the
models (so a configured Django).
"""

from __future__ import annotations

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(("MODES", "QueryLogConfig"), "querylog.logger.config"),
    **dict.fromkeys(
        (
            "BATCH_SECONDS_BUCKETS",
            "QUEUE_DEPTH_BUCKETS",
            "CloseReport",
            "HistogramSnapshot",
            "QueryLogStats",
        ),
        "querylog.logger.counters",
    ),
    **dict.fromkeys(
        (
            "CATCHUP_PAUSE_RATIO",
            "CATCHUP_PIECE_ROWS",
            "WRITE_METHODS",
            "WRITER_BUSY_TIMEOUT_MS",
            "BatchWriter",
            "Pacer",
            "QueryLogWriter",
            "WriteAbandoned",
            "default_write_method",
        ),
        "querylog.logger.writer",
    ),
    "QueryLogger": "querylog.logger.pool",
    **dict.fromkeys(
        ("THREAD_MODE_MAX_CONNECTIONS", "DisabledQueryLogger", "ThreadPerQueryLogger"), "querylog.logger.baselines"
    ),
    **dict.fromkeys(("QueryLoggerLike", "query_logger_build", "query_logger_from_settings"), "querylog.logger.build"),
    "SwappableQueryLogger": "querylog.logger.swappable",
    **dict.fromkeys(
        (
            "COLUMNS",
            "SQLITE_CHUNK_ROWS",
            "execute_copy",
            "execute_values",
            "querylog_from_entry",
            "sqlite_write_lock",
            "timestamp_adapter",
            "without_nul",
        ),
        "querylog.db",
    ),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
