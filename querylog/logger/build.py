"""Which logger a ``QueryLogConfig`` describes: pool, writer processes, thread per query, or none."""

from __future__ import annotations

from querylog.logger.baselines import DisabledQueryLogger, ThreadPerQueryLogger
from querylog.logger.config import QueryLogConfig
from querylog.logger.pool import QueryLogger
from querylog.logger.process import ProcessQueryLogger

QueryLoggerLike = QueryLogger | ProcessQueryLogger | ThreadPerQueryLogger | DisabledQueryLogger


def query_logger_build(config: QueryLogConfig, engine_name: str = "", **kwargs) -> QueryLoggerLike:
    """The logger a config describes, not started. kwargs go to the logger (writer=, retry_*)."""
    if not config.enabled:
        return DisabledQueryLogger()
    cls = {"pool": QueryLogger, "process": ProcessQueryLogger}.get(config.mode, ThreadPerQueryLogger)
    return cls(
        config.buffer_size,
        config.workers,
        config.batch_size,
        config.flush_interval,
        engine_name,
        rollups=config.rollups,
        **kwargs,
    )


def query_logger_from_settings(engine_name: str = "") -> QueryLoggerLike:
    """The logger GLORYHOLE_QUERY_LOG_* describe, not started."""
    return query_logger_build(QueryLogConfig.from_settings(), engine_name)
