"""Fixtures shared by the web tests; a test module imports the ones it uses.

Kept here rather than in the root conftest.py, which another part of the
project owns (and whose `client` fixture is a DNS client: the web tests use
`web`, a Django test client, instead).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from querylog.models import QueryLog
from querylog.selectors import dashboard_memo_clear

_counter = itertools.count()


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
    # The dashboard memoises closed hours per process; each test has its own data.
    dashboard_memo_clear()


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user("staff", password="staff-pass-123", is_staff=True)


@pytest.fixture
def viewer_user(db):
    return get_user_model().objects.create_user("viewer", password="viewer-pass-123")


@pytest.fixture
def web(db) -> Client:
    """An anonymous browser."""
    return Client()


@pytest.fixture
def staff_web(staff_user) -> Client:
    web = Client()
    web.force_login(staff_user)
    return web


@pytest.fixture
def viewer_web(viewer_user) -> Client:
    """Signed in, not staff: may read every page, may change nothing."""
    web = Client()
    web.force_login(viewer_user)
    return web


def make_query(
    domain: str = "example.com",
    *,
    client: str = "192.0.2.10",
    status: str = "forwarded",
    when: datetime | None = None,
    qtype: str = "A",
    rcode: str = "NOERROR",
    rule: str = "",
    upstream: str = "",
) -> QueryLog:
    return QueryLog.objects.create(
        timestamp=when or timezone.now() - timedelta(seconds=next(_counter)),
        client=client,
        protocol="udp",
        domain=domain,
        qtype=qtype,
        rcode=rcode,
        status=status,
        rule=rule,
        upstream=upstream,
        duration_us=1500,
    )
