"""Which logger a ``QueryLogConfig`` describes: the pool, the thread-per-query baseline, or none."""

from __future__ import annotations

from querylog.logger.baselines import DisabledQueryLogger, ThreadPerQueryLogger
from querylog.logger.config import QueryLogConfig
from querylog.logger.pool import QueryLogger

QueryLoggerLike = QueryLogger | ThreadPerQueryLogger | DisabledQueryLogger


def query_logger_build(config: QueryLogConfig, engine_name: str = "", **kwargs) -> QueryLoggerLike:
    """The logger a config describes, not started. kwargs go to the logger (writer=, retry_*)."""
    if not config.enabled:
        return DisabledQueryLogger()
    cls = QueryLogger if config.mode == "pool" else ThreadPerQueryLogger
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
