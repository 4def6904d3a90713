"""Fixtures of the query log's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def loggers():
    """Loggers a test builds; closed at teardown even when the test fails."""
    made = []
    yield made
    for logger in made:
        logger.close(timeout=5)
