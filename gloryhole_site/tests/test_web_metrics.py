"""The web process's /metrics: a staff session, the API token, or an address it is open to."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

URL = "/metrics"
TOKEN = "scrape-token-0123456789"


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.GLORYHOLE_API_TOKEN = TOKEN
    settings.GLORYHOLE_WEB_METRICS_OPEN_TO = ()
    settings.GLORYHOLE_TRUSTED_PROXIES = ()


def served(response) -> bool:
    return response.status_code == 200 and b"django_http_requests" in response.content


@pytest.mark.django_db
def test_anonymous_scrapes_are_refused(web):
    response = web.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"django_http" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer wrong-token", "Basic c2NyYXBlOg==", f"Token {TOKEN}", "Bearer"])
def test_a_wrong_token_is_refused(web, header):
    assert web.get(URL, HTTP_AUTHORIZATION=header).status_code == 401


@pytest.mark.django_db
def test_no_token_is_accepted_while_the_api_token_is_unset(web, settings):
    settings.GLORYHOLE_API_TOKEN = ""
    assert web.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 401


@pytest.mark.django_db
def test_the_api_token_is_served(web):
    assert served(web.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))


def test_a_staff_session_is_served(staff_web):
    assert served(staff_web.get(URL))


def test_a_signed_in_viewer_is_refused(viewer_web):
    assert viewer_web.get(URL).status_code == 403


@pytest.mark.django_db
def test_an_open_to_address_is_served_without_credentials(web, settings):
    settings.GLORYHOLE_WEB_METRICS_OPEN_TO = (ip_network("10.0.0.0/24"),)
    assert served(web.get(URL, REMOTE_ADDR="10.0.0.5"))
    assert web.get(URL, REMOTE_ADDR="10.0.1.5").status_code == 401


@pytest.mark.django_db
def test_a_forwarded_header_does_not_open_it(web, settings):
    settings.GLORYHOLE_WEB_METRICS_OPEN_TO = (ip_network("10.0.0.5/32"),)
    assert web.get(URL, REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="10.0.0.5").status_code == 401
