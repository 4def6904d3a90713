"""querylog.logger.build: the logger the settings describe."""

from __future__ import annotations

from querylog.logger.baselines import DisabledQueryLogger, ThreadPerQueryLogger
from querylog.logger.build import query_logger_from_settings
from querylog.logger.pool import QueryLogger


def test_it_builds_the_configured_logger_from_settings(settings):
    settings.GLORYHOLE_QUERY_LOG_MODE = "thread"
    assert isinstance(query_logger_from_settings(), ThreadPerQueryLogger)
    settings.GLORYHOLE_QUERY_LOG_MODE = "pool"
    settings.GLORYHOLE_QUERY_LOG_WORKERS = 3
    logger = query_logger_from_settings()
    assert isinstance(logger, QueryLogger) and logger.workers == 3
    settings.GLORYHOLE_QUERY_LOG_ENABLED = False
    assert isinstance(query_logger_from_settings(), DisabledQueryLogger)
