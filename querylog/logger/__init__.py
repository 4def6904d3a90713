"""The query logger: the DNS path hands it one entry per answered query and never waits.

Accounting: every entry handed to ``log_async`` ends in exactly one of *written*,
*dropped* (refused: queue full or logger closed), *unwritten* (accepted but given up
on: rejected by the database as invalid, or still queued when close() ran out of
time), or is forwarded to the logger that replaced this one (SIGHUP reconfigure).

Modules, in the order a reader needs them:

- ``config``: ``QueryLogConfig`` and the table of GLORYHOLE_QUERY_LOG_* settings
  (parser, default, bounds) that settings.py reads;
- ``pool``: ``QueryLogger``, the bounded queue and its writer threads (the default);
- ``process``: ``ProcessQueryLogger`` (mode ``process``), the same queue written by child
  processes (``child``), over the messages of ``frames``;
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

Import from the module that defines a name (``from querylog.logger.pool import
QueryLogger``): this file only describes the package, so settings.py can import
``querylog.logger.config`` while Django is still being configured.
"""
