"""Login throttling (django-axes, gloryhole_site/throttle.py) through the real login URL.

Time is moved by shifting axes' timestamps into the past (`travel`), so a lockout of
a minute is tested without waiting a minute.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from ipaddress import ip_network

import pytest
from axes.models import AccessAttempt, AccessAttemptExpiration, AccessFailureLog
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import F
from django.test import Client
from django.urls import reverse

from gloryhole_site.throttle import cool_off_for

PASSWORD = "staff-pass-123"
VIEWER_PASSWORD = "viewer-pass-123"
ATTACKER = "203.0.113.66"
ELSEWHERE = "198.51.100.20"
LIMIT = 3
LOCKOUT = 60
MAX_LOCKOUT = 240


@pytest.fixture(autouse=True)
def throttle_settings(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.GLORYHOLE_LOGIN_LOCKOUT_SECONDS = LOCKOUT
    settings.GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS = MAX_LOCKOUT
    settings.GLORYHOLE_TRUSTED_PROXIES = ()


def login(username: str, password: str, address: str = ATTACKER, path: str | None = None, **headers):
    """One login by a fresh browser; the response."""
    return Client().post(
        path or reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address, **headers
    )


def fail(times: int, username: str = "staff", address: str = ATTACKER, **headers) -> None:
    for _ in range(times):
        assert login(username, "wrong", address, **headers).status_code in (200, 429)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == reverse("querylog-dashboard")


def refused(response) -> bool:
    return response.status_code == 429 and b"Too many failed logins" in response.content


def travel(seconds: float) -> None:
    """As if `seconds` had passed: every attempt, expiry and logged failure moves that far back."""
    delta = timedelta(seconds=seconds)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - delta)
    AccessAttemptExpiration.objects.update(expires_at=F("expires_at") - delta)
    AccessFailureLog.objects.update(attempt_time=F("attempt_time") - delta)


def test_after_the_limit_the_right_password_is_refused(staff_user):
    fail(LIMIT)
    response = login("staff", PASSWORD)
    assert refused(response)
    assert "_auth_user_id" not in response.wsgi_request.session


def test_below_the_limit_the_right_password_still_works(staff_user):
    fail(LIMIT - 1)
    assert logged_in(login("staff", PASSWORD))


def test_the_lockout_ends_after_the_cool_off(staff_user):
    fail(LIMIT)
    travel(LOCKOUT - 5)
    assert refused(login("staff", PASSWORD))  # and this try starts the wait again
    travel(LOCKOUT + 1)
    assert logged_in(login("staff", PASSWORD))


def test_another_user_from_another_address_is_not_locked(staff_user, viewer_user):
    fail(LIMIT)
    assert logged_in(login("viewer", VIEWER_PASSWORD, ELSEWHERE))


def test_the_locked_username_is_refused_from_every_address(staff_user):
    fail(LIMIT, address=ATTACKER)
    assert refused(login("staff", PASSWORD, ELSEWHERE))


def test_every_username_is_refused_from_a_locked_address(staff_user, viewer_user):
    for name in ("root", "admin", "guest"):
        fail(1, username=name)
    assert refused(login("viewer", VIEWER_PASSWORD, ATTACKER))
    assert logged_in(login("viewer", VIEWER_PASSWORD, ELSEWHERE))


def test_the_lockout_grows_with_each_lockout(staff_user):
    fail(LIMIT)
    travel(LOCKOUT + 1)
    fail(LIMIT)  # the second lockout: twice as long
    travel(LOCKOUT + 1)
    assert refused(login("staff", PASSWORD))
    travel(2 * LOCKOUT + 1)
    assert logged_in(login("staff", PASSWORD))


def test_the_lockout_stops_growing_at_the_maximum(staff_user):
    fail(LIMIT * 10)  # tries during a lockout count too
    response = login("staff", PASSWORD)
    assert refused(response)
    assert response.context["cooloff_timedelta"] == timedelta(seconds=MAX_LOCKOUT)
    travel(MAX_LOCKOUT + 1)
    assert logged_in(login("staff", PASSWORD))


def test_a_shorter_lockout_elsewhere_does_not_end_a_longer_one(staff_user):
    fail(LIMIT * 2)  # a second lockout's worth: 2 minutes
    travel(LOCKOUT + 1)
    # A first failure elsewhere, whose own cool-off is one minute, clears expired attempts.
    fail(1, username="someone", address=ELSEWHERE)
    assert refused(login("staff", PASSWORD))


def test_the_cool_off_doubles_per_lockout_up_to_the_maximum():
    assert [cool_off_for(n).total_seconds() for n in (0, 2, 3, 5, 6, 9, 12, 15, 10**6)] == [
        60,
        60,
        60,
        60,
        120,
        240,
        240,
        240,
        240,
    ]


def test_a_forwarded_header_does_not_dodge_the_lockout(staff_user):
    # No trusted proxy: whatever a client writes in X-Forwarded-For is ignored.
    for i in range(LIMIT - 1):
        assert login("staff", "wrong", ATTACKER, HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}").status_code == 200
    # The failure that reaches the limit is answered with the lockout already.
    assert refused(login("staff", "wrong", ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.100"))
    assert refused(login("staff", PASSWORD, ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.200"))
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(settings, staff_user, viewer_user):
    settings.GLORYHOLE_TRUSTED_PROXIES = (ip_network("127.0.0.1/32"),)
    # nginx appends the address it saw; what the client sent stands to the left of it.
    for spoofed in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        login("guest", "wrong", "127.0.0.1", HTTP_X_FORWARDED_FOR=f"{spoofed}, {ATTACKER}")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}
    assert refused(login("viewer", VIEWER_PASSWORD, "127.0.0.1", HTTP_X_FORWARDED_FOR=ATTACKER))
    # The proxy itself is not locked: another client behind it logs in.
    assert logged_in(login("viewer", VIEWER_PASSWORD, "127.0.0.1", HTTP_X_FORWARDED_FOR=ELSEWHERE))


def test_the_admin_login_is_throttled_too(staff_user):
    admin_login = reverse("admin:login")
    for _ in range(LIMIT):
        login("staff", "wrong", path=admin_login)
    response = login("staff", PASSWORD, path=admin_login)
    assert response.status_code == 429


def test_a_successful_login_does_not_clear_the_address_failures(staff_user, viewer_user):
    fail(LIMIT - 1)
    assert logged_in(login("viewer", VIEWER_PASSWORD, ATTACKER))
    fail(1)
    assert refused(login("staff", PASSWORD))


def test_a_lockout_is_logged_once_with_username_and_address(staff_user, caplog):
    with caplog.at_level(logging.INFO):
        fail(LIMIT + 3)
        login("staff", PASSWORD)
    lines = [r.getMessage() for r in caplog.records if r.name == "gloryhole_site.throttle"]
    assert len(lines) == 1, lines
    assert "'staff'" in lines[0]
    assert ATTACKER in lines[0]
    assert f"{LOCKOUT} s" in lines[0]
    # Neither axes' lines per failure nor Django's per refused try.
    assert not [r for r in caplog.records if r.name.startswith("axes") and r.levelno < logging.ERROR]
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_staff_see_attempts_and_failures_in_the_admin(db):
    admin_user = get_user_model().objects.create_superuser("boss", password="boss-pass-123")
    fail(LIMIT, username="staff")
    web = Client()
    web.force_login(admin_user)
    for url in ("admin:axes_accessattempt_changelist", "admin:axes_accessfailurelog_changelist"):
        page = web.get(reverse(url))
        assert page.status_code == 200
        assert ATTACKER in page.content.decode()


def test_axes_reset_username_unlocks_at_once(staff_user):
    fail(LIMIT)
    call_command("axes_reset_username", "staff")
    assert logged_in(login("staff", PASSWORD))


def test_force_login_is_not_throttled(staff_web, staff_user):
    """The suite's signed-in fixtures skip authenticate(); a locked username still gets their session."""
    fail(LIMIT)
    assert staff_web.get(reverse("querylog-dashboard")).status_code == 200
