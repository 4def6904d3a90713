"""Fixtures of the dnsengine tests: a blocklist server on loopback."""

from __future__ import annotations

import pytest

from gloryhole_site.testing.list_server import ListServer


@pytest.fixture
def list_server():
    server = ListServer().start()
    yield server
    server.stop()


@pytest.fixture
def offline_lists():
    """Drop every subscription that does not point at loopback (the defaults of migration 0003).

    Use it (with a django_db mark) in any test that updates "all lists": tests never reach the internet.
    """
    from dnsengine.models import Blocklist

    Blocklist.objects.exclude(url="").exclude(url__startswith="http://127.0.0.1:").delete()
