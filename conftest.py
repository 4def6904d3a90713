"""Fixtures shared by every app's tests: a fake upstream and a running engine on loopback.

The helpers they use, and that tests import, are in `gloryhole_site.testing`.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client as WebClient

from gloryhole_site.testing.dnsclient import Client
from gloryhole_site.testing.fake_upstream import FakeUpstream

# No test may ever reach a real resolver: the default upstream list points at public
# resolvers, so replace it before settings are read.
os.environ["GLORYHOLE_UPSTREAMS"] = "127.0.0.1:9"
os.environ.setdefault("GLORYHOLE_METRICS_PORT", "0")
# Nor a real blocklist server: rundns subprocesses inherit this environment.
os.environ["GLORYHOLE_BLOCKLIST_UPDATE_HOURS"] = "0"


@pytest.fixture(autouse=True)
def no_scheduled_blocklist_updates(settings):
    """Engines started in-process never schedule downloads of the default subscription.

    Settings were read before this file was imported, so the environment line above
    only reaches subprocesses; tests of the updater build one explicitly.
    """
    settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS = 0


@pytest.fixture(autouse=True)
def no_database_session_left_behind(request, django_db_blocker):
    """On PostgreSQL, a test that used the database leaves no other session open on it.

    Every thread that touches the ORM (config watcher, updater, writers, heartbeat)
    closes its connections when it ends; one that does not leaves an idle session,
    and at the end of the run DROP DATABASE fails with "being accessed by other users".
    Checked after the test's other fixtures (engines, servers) are torn down.
    """
    yield
    if "django_db_setup" not in request.fixturenames:
        return
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    query = (
        "SELECT pid, state, left(query, 100), backend_start FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    with django_db_blocker.unblock():
        deadline = time.monotonic() + 3  # a closed session takes a moment to leave the view
        while True:
            with connection.cursor() as cursor:
                cursor.execute(query)
                others = cursor.fetchall()
            if not others or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert not others, f"sessions left open on the test database: {others}"


@pytest.fixture
def upstream():
    server = FakeUpstream("127.0.0.1", 0).start()
    yield server
    server.stop()


@pytest.fixture
def engine_config(upstream):
    from dnsengine.core.options import parse_upstreams
    from dnsengine.runtime.config import EngineConfig

    config = EngineConfig.from_settings("127.0.0.1", 0)
    return dataclasses.replace(
        config,
        upstreams=parse_upstreams(upstream.address),
        upstream_timeout=0.5,
        reload_interval=0.1,
        tcp_idle_timeout=2.0,
    )


@pytest.fixture
def make_engine(transactional_db):
    """Start engines (stopped at teardown): make_engine(config, query_logger=None)."""
    from dnsengine.runtime.engine import Engine

    started = []

    def make(config, query_logger=None):
        engine = Engine(config, query_logger=query_logger)
        engine.start()
        started.append(engine)
        return engine

    yield make
    for engine in started:
        engine.stop()


@pytest.fixture
def engine(make_engine, engine_config):
    return make_engine(engine_config)


@pytest.fixture
def dns_client(engine):
    return Client(engine.port)


# --- Web ----------------------------------------------------------------------------
# `client` stays pytest-django's Django test client; these add signed-in variants.


@pytest.fixture(autouse=True)
def web_settings(settings):
    """The manifest storage needs `collectstatic` first; tests render templates without it.

    A fast password hasher: the real one spends half a second per user on purpose.
    """
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # WhiteNoise warns once per handler when STATIC_ROOT does not exist (no collectstatic
    # in tests): ~140 identical warnings that would hide a real one. An empty directory
    # serves nothing either way; it is git-ignored and `make run` fills it.
    os.makedirs(settings.STATIC_ROOT, exist_ok=True)
    # The dashboard memoises closed hours per process; each test has its own data.
    from querylog.selectors import dashboard_memo_clear

    dashboard_memo_clear()


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user("staff", password="staff-pass-123", is_staff=True)


@pytest.fixture
def viewer_user(db):
    return get_user_model().objects.create_user("viewer", password="viewer-pass-123")


@pytest.fixture
def web(db) -> WebClient:
    """An anonymous browser."""
    return WebClient()


@pytest.fixture
def staff_web(staff_user) -> WebClient:
    web = WebClient()
    web.force_login(staff_user)
    return web


@pytest.fixture
def viewer_web(viewer_user) -> WebClient:
    """Signed in, not staff: may read every page, may change nothing."""
    web = WebClient()
    web.force_login(viewer_user)
    return web
