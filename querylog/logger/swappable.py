"""``SwappableQueryLogger``: the logger the engine holds, so SIGHUP can replace what is behind it.

A reconfigure starts the new logger, points ``log_async`` at it, then drains the old
one into it: a change of mode, workers or buffer loses no queued entry. Counters and
the close report add up over every logger it has held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from dnsengine.core.entry import QueryLogEntry
from querylog.logger.baselines import DisabledQueryLogger
from querylog.logger.build import QueryLoggerLike, query_logger_build
from querylog.logger.config import QueryLogConfig
from querylog.logger.counters import CloseReport, HistogramSnapshot, QueryLogStats
from querylog.privacy import PrivacyPolicy, PrivacyState
from querylog.privacy_settings import privacy_policy_current
from querylog.rollups import rollup_minutes_write
from querylog.sqlite_wal import WalStats

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Retired:
    written: int = 0
    unwritten: int = 0
    dropped: int = 0
    write_errors: int = 0
    queue_depth: HistogramSnapshot | None = None
    batch_seconds: HistogramSnapshot | None = None
    reports: list[CloseReport] = field(default_factory=list)


class SwappableQueryLogger:
    """The logger the engine holds: SIGHUP swaps what is behind it without losing entries.

    ``log_async`` is the current logger's own bound method, stored on this object and
    replaced on reconfigure, so the hot path pays no extra call. Call
    ``query_logger.log_async(entry)`` each time; a bound method cached before a swap
    still works (the old logger forwards to its successor) but costs a hop.
    """

    def __init__(
        self,
        logger: QueryLoggerLike,
        *,
        engine_name: str = "",
        config: QueryLogConfig | None = None,
        privacy: PrivacyState | None = None,
    ) -> None:
        self._current = logger
        self.log_async: Callable[[QueryLogEntry], bool] = logger.log_async
        # Shared with every logger built here (pass the same one to the first logger).
        self.privacy = privacy or getattr(logger, "_privacy", None) or PrivacyState()
        if hasattr(logger, "_privacy") and logger._privacy is None:
            logger._privacy = self.privacy
        self.engine_name = engine_name
        self.config = config
        self._lock = threading.Lock()
        self._retired = _Retired()
        self._report: CloseReport | None = None
        self.generation = 0  # how many times reconfigured

    @classmethod
    def from_settings(cls, engine_name: str = "", config: QueryLogConfig | None = None) -> SwappableQueryLogger:
        """The logger the settings describe (``config``: with the settings page's values, from rundns)."""
        config = config or QueryLogConfig.from_settings()
        privacy = PrivacyState()
        logger = query_logger_build(config, engine_name, privacy=privacy)
        return cls(logger, engine_name=engine_name, config=config, privacy=privacy)

    @property
    def current(self) -> QueryLoggerLike:
        return self._current

    def start(self) -> SwappableQueryLogger:
        self._current.start()
        return self

    def reconfigure(self, config: QueryLogConfig, timeout: float = 30.0, **kwargs) -> CloseReport:
        """Start a logger for ``config``, swap it in, then close (drain) the old one.

        Returns the old logger's close report. Entries the old one could not write in
        ``timeout`` (or that reached it after the swap) are handed to the new one.
        """
        with self._lock:
            if self._report is not None:
                raise RuntimeError("query logger is closed")
            new = query_logger_build(config, self.engine_name, privacy=self.privacy, **kwargs).start()
            old = self._current
            old._successor = new if not isinstance(new, DisabledQueryLogger) else None
            self._current = new
            self.log_async = self._intake()
            self.config = config
            self.generation += 1
            report = old.close(timeout)
            self._retire(old, report)
            log.info(
                "query log reconfigured: mode=%s workers=%d buffer=%d (previous logger wrote %d, dropped %d)",
                new.mode,
                new.workers,
                new.capacity,
                report.written,
                report.dropped,
            )
            return report

    # -- privacy ------------------------------------------------------------------------

    def _intake(self) -> Callable[[QueryLogEntry], bool]:
        """What the DNS path calls: level 3 counts into the tally, nothing is queued."""
        current = self._current
        if self.privacy.policy.level >= 3 and not isinstance(current, DisabledQueryLogger):
            return self.privacy.tally.add
        return current.log_async

    def privacy_apply(self, policy: PrivacyPolicy) -> bool:
        """Put ``policy`` in force; True if it differs from the one before.

        The writers read ``privacy.policy`` per batch, so what is still queued is stored
        as the new policy says (never more than it allows).
        """
        with self._lock:
            if policy == self.privacy.policy:
                return False
            self.privacy.policy = policy
            if self._report is None:
                self.log_async = self._intake()
        log.info("query log privacy: level %d%s", policy.level, " (with exclusions)" if policy.active else "")
        return True

    def privacy_poll(self) -> None:
        """Read the privacy settings in force and write level 3's per-minute totals.

        Called by the engine's config watcher each poll (GLORYHOLE_RELOAD_INTERVAL): one
        one-row read, plus at level 3 one small upsert.
        """
        self.privacy_apply(privacy_policy_current())
        self.tally_flush()

    def tally_flush(self) -> int:
        """Add level 3's counts to the per-minute rollups; on failure they stay for the next try."""
        counts = self.privacy.tally.take()
        if not counts:
            return 0
        if self.config is not None and not self.config.rollups:
            return 0
        try:
            rollup_minutes_write(counts)
        except Exception:
            self.privacy.tally.give_back(counts)
            raise
        return sum(counts.values())

    def not_logged(self) -> dict[str, int]:
        return self.privacy.not_logged()

    def reconfigure_from_environ(self, timeout: float = 30.0, base: QueryLogConfig | None = None) -> CloseReport | None:
        """SIGHUP: re-read GLORYHOLE_QUERY_LOG_* and swap if anything changed (``base``: for the unset ones)."""
        config = QueryLogConfig.from_environ(base)
        if config == self.config:
            return None
        return self.reconfigure(config, timeout)

    def _retire(self, old: QueryLoggerLike, report: CloseReport) -> None:
        stats = old.stats()
        r = self._retired
        r.written += report.written
        r.unwritten += report.unwritten
        r.dropped += report.dropped
        r.write_errors += stats.write_errors
        r.queue_depth = stats.queue_depth if r.queue_depth is None else r.queue_depth.merged(stats.queue_depth)
        r.batch_seconds = (
            stats.batch_seconds if r.batch_seconds is None else r.batch_seconds.merged(stats.batch_seconds)
        )
        r.reports.append(report)

    def close(self, timeout: float = 30.0) -> CloseReport:
        """Close the current logger; the report covers every logger this one has held."""
        with self._lock:
            if self._report is None:
                # Intake off first: from now on level 3's tally gets nothing new either.
                self.log_async = self._current.log_async
                report = self._current.close(timeout)
                try:
                    self.tally_flush()
                except Exception:
                    log.exception("query log: level 3's last per-minute totals could not be written")
                r = self._retired
                self._report = CloseReport(
                    written=r.written + report.written,
                    unwritten=r.unwritten + report.unwritten,
                    dropped=r.dropped + report.dropped,
                    not_logged=self.privacy.not_logged_total,
                )
            return self._report

    def stats(self) -> QueryLogStats:
        s = self._current.stats()
        r = self._retired
        return replace(
            s,
            drops=s.drops + r.dropped,
            written=s.written + r.written,
            write_errors=s.write_errors + r.write_errors,
            unwritten=s.unwritten + r.unwritten,
            queue_depth=s.queue_depth if r.queue_depth is None else s.queue_depth.merged(r.queue_depth),
            batch_seconds=s.batch_seconds if r.batch_seconds is None else s.batch_seconds.merged(r.batch_seconds),
            not_logged=self.privacy.not_logged(),
        )

    # The properties the heartbeat and tests read, cumulative over swaps.
    mode = property(lambda self: self._current.mode)
    workers = property(lambda self: self._current.workers)
    size = property(lambda self: self._current.size)
    capacity = property(lambda self: self._current.capacity)
    drops = property(lambda self: self._current.drops + self._retired.dropped)
    written = property(lambda self: self._current.written + self._retired.written)
    write_errors = property(lambda self: self._current.write_errors + self._retired.write_errors)
    unwritten = property(lambda self: self._current.unwritten + self._retired.unwritten)
    write_rate = property(lambda self: self._current.write_rate)
    wal_stats = property(lambda self: getattr(self._current, "wal_stats", WalStats()))  # the current logger's
