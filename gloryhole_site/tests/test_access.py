"""Who may see and change what, across every URL the site serves."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

# Served without a login on purpose: the login page itself.
PUBLIC = {"login"}
API = {"api-stats", "api-queries", "api-status"}
# Every /api/ endpoint answers 401 rather than redirecting: scripts cannot follow a login
# page. So does Prometheus' scrape target, which takes the same bearer token.
API_PREFIX = "/api/"
SCRAPE = {"prometheus-django-metrics"}


def own_named_urls() -> list[tuple[str, dict]]:
    """Every named URL outside /admin/ (which guards itself), with sample arguments."""
    found = []

    def walk(patterns, namespace: str | None) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.namespace == "admin":
                    continue
                walk(p.url_patterns, p.namespace or namespace)
            elif isinstance(p, URLPattern) and p.name and not namespace:
                kwargs = {k: 1 for k in p.pattern.converters}
                found.append((p.name, kwargs))

    walk(get_resolver().url_patterns, None)
    return found


def test_the_walk_finds_every_page():
    names = {name for name, _ in own_named_urls()}
    assert {"querylog-dashboard", "querylog-history", "engine-status", "dnsengine-blocklists"} <= names
    assert API <= names


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "kwargs"), own_named_urls())
def test_anonymous_users_see_nothing_but_the_login_page(web, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    for method in (web.get, web.post):
        response = method(url)
        if name in PUBLIC:
            assert response.status_code in (200, 405)
        elif url.startswith(API_PREFIX) or name in SCRAPE:
            assert response.status_code in (401, 403, 405), f"{method.__name__} {url}"
        else:
            assert response.status_code in (302, 405), f"{method.__name__} {url}"
            if response.status_code == 302:
                assert response["Location"].startswith(reverse("login")), url


def test_a_viewer_reads_every_page(viewer_web):
    for name in ("querylog-dashboard", "querylog-history", "engine-status", "dnsengine-blocklists"):
        assert viewer_web.get(reverse(name)).status_code == 200, name


@pytest.mark.django_db
def test_the_login_page_logs_in_and_goes_to_the_dashboard(web, staff_user):
    page = web.get(reverse("login"))
    assert page.status_code == 200
    assert b"csrfmiddlewaretoken" in page.content
    response = web.post(reverse("login"), {"username": "staff", "password": "staff-pass-123"})
    assert response.status_code == 302
    assert response["Location"] == reverse("querylog-dashboard")


@pytest.mark.django_db
def test_a_wrong_password_is_refused(web, staff_user):
    response = web.post(reverse("login"), {"username": "staff", "password": "nope"})
    assert response.status_code == 200
    assert b"didn't match" in response.content


def test_logging_out_takes_a_post(staff_web):
    assert staff_web.post(reverse("logout")).status_code == 302
    assert staff_web.get(reverse("querylog-dashboard")).status_code == 302


def test_metrics_are_served_by_django_prometheus_to_staff(staff_web):
    response = staff_web.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests" in response.content


def test_pages_cannot_be_framed(viewer_web):
    assert viewer_web.get(reverse("querylog-dashboard"))["X-Frame-Options"] == "DENY"
