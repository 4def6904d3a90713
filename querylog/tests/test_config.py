"""querylog.logger.config: the GLORYHOLE_QUERY_LOG_* table and QueryLogConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from querylog.logger.build import query_logger_from_settings
from querylog.logger.config import (
    BATCH,
    BUFFER,
    ENABLED,
    FLUSH_INTERVAL,
    MODE,
    QUERY_LOG_SETTINGS,
    ROLLUPS,
    WORKERS,
    QueryLogConfig,
)


def test_it_rejects_an_unknown_mode(settings):
    settings.GLORYHOLE_QUERY_LOG_MODE = "goroutine"
    with pytest.raises(ImproperlyConfigured, match="GLORYHOLE_QUERY_LOG_MODE"):
        query_logger_from_settings()


def test_settings_py_reads_every_query_log_setting_from_the_table():
    source = (Path(django_settings.BASE_DIR) / "gloryhole_site" / "settings.py").read_text()

    for setting in QUERY_LOG_SETTINGS:
        row = setting.name.removeprefix("GLORYHOLE_QUERY_LOG_")
        assert f"{setting.name} = query_log.{row}.read()" in source, setting.name
        assert hasattr(django_settings, setting.name), setting.name


def test_a_row_reads_its_default_when_the_variable_is_unset(monkeypatch):
    for setting in QUERY_LOG_SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)

    assert {s.name: s.read() for s in QUERY_LOG_SETTINGS} == {s.name: s.default for s in QUERY_LOG_SETTINGS}


def test_the_config_defaults_are_the_tables():
    assert QueryLogConfig() == QueryLogConfig(
        enabled=ENABLED.default,
        mode=MODE.default,
        buffer_size=BUFFER.default,
        workers=WORKERS.default,
        batch_size=BATCH.default,
        flush_interval=FLUSH_INTERVAL.default,
        rollups=ROLLUPS.default,
    )


@pytest.mark.parametrize(
    ("setting", "bad"),
    [(BUFFER, "0"), (BUFFER, "10000001"), (WORKERS, "65"), (BATCH, "0"), (FLUSH_INTERVAL, "0.001")],
)
def test_sighup_refuses_a_value_outside_the_tables_bounds(monkeypatch, setting, bad):
    monkeypatch.setenv(setting.name, bad)

    with pytest.raises(ImproperlyConfigured, match=setting.name):
        QueryLogConfig.from_environ()


def test_sighup_keeps_the_started_value_of_a_variable_that_is_unset_now(monkeypatch, settings):
    monkeypatch.delenv(WORKERS.name, raising=False)
    settings.GLORYHOLE_QUERY_LOG_WORKERS = 3

    assert QueryLogConfig.from_environ().workers == 3
