"""Behind an HTTPS proxy: who the client is, which scheme counts, and the headers every page carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import ip_network

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory
from django.urls import reverse

from gloryhole_site.security import CONTENT_SECURITY_POLICY, client_address

LOOPBACK = (ip_network("127.0.0.1/32"), ip_network("::1/128"))


def request(remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


# -- client_address ----------------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client(settings):
    settings.GLORYHOLE_TRUSTED_PROXIES = ()
    assert client_address(request("203.0.113.5", "192.0.2.1")) == "203.0.113.5"


def test_a_peer_that_is_not_a_trusted_proxy_cannot_name_another_client(settings):
    settings.GLORYHOLE_TRUSTED_PROXIES = LOOPBACK
    assert client_address(request("203.0.113.5", "192.0.2.1")) == "203.0.113.5"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(settings):
    settings.GLORYHOLE_TRUSTED_PROXIES = (*LOOPBACK, ip_network("10.0.0.0/8"))
    # client-written junk, the real client, then a second proxy of ours
    assert client_address(request("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3")) == "203.0.113.9"
    assert client_address(request("::1", "2001:db8::7")) == "2001:db8::7"


def test_junk_in_the_header_stops_at_the_last_vouched_for_hop(settings):
    settings.GLORYHOLE_TRUSTED_PROXIES = (*LOOPBACK, ip_network("10.0.0.0/8"))
    assert client_address(request("127.0.0.1", "not-an-address, 10.0.0.2")) == "10.0.0.2"
    assert client_address(request("127.0.0.1", "")) == "127.0.0.1"


def test_no_peer_address_gives_none(settings):
    settings.GLORYHOLE_TRUSTED_PROXIES = LOOPBACK
    assert client_address(request("", "203.0.113.4")) is None
    assert client_address(request("unix:/run/gunicorn.sock")) is None


def test_ipv4_mapped_addresses_read_as_ipv4(settings):
    settings.GLORYHOLE_TRUSTED_PROXIES = LOOPBACK
    assert client_address(request("::ffff:127.0.0.1", "::ffff:203.0.113.4")) == "203.0.113.4"


# -- the forwarded scheme ------------------------------------------------------------------


@pytest.fixture
def behind_proxy(settings):
    settings.GLORYHOLE_TRUSTED_PROXIES = LOOPBACK
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_SSL_REDIRECT = True


@pytest.mark.django_db
def test_the_proxy_forwarded_https_counts_and_brings_hsts(web, behind_proxy):
    response = web.get(reverse("login"), REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


@pytest.mark.django_db
def test_a_client_that_is_not_the_proxy_cannot_claim_https(web, behind_proxy):
    response = web.get(reverse("login"), REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 301  # SECURE_SSL_REDIRECT: it came over plain HTTP
    assert response["Location"].startswith("https://")
    assert "Strict-Transport-Security" not in response


@pytest.mark.django_db
def test_secure_cookies_when_asked(web, settings, staff_user):
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    page = web.get(reverse("login"))
    assert page.cookies["csrftoken"]["secure"]
    response = web.post(reverse("login"), {"username": "staff", "password": "staff-pass-123"})
    assert response.cookies["sessionid"]["secure"]


@pytest.mark.django_db
def test_a_trusted_origin_may_post_over_https(settings, staff_user):
    """A proxy that rewrites Host: the browser's Origin must be listed in CSRF_TRUSTED_ORIGINS."""
    from django.test import Client

    settings.GLORYHOLE_TRUSTED_PROXIES = LOOPBACK
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_PROTO": "https"}

    def post_login() -> int:
        # A new client each time: the CSRF middleware reads the trusted origins once.
        web = Client(enforce_csrf_checks=True)
        token = web.get(reverse("login"), **proxied).cookies["csrftoken"].value
        post = {"username": "staff", "password": "staff-pass-123", "csrfmiddlewaretoken": token}
        return web.post(reverse("login"), post, HTTP_ORIGIN="https://dns.example.lan", **proxied).status_code

    assert post_login() == 403
    settings.CSRF_TRUSTED_ORIGINS = ["https://dns.example.lan"]
    assert post_login() == 302


# -- headers on every page -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_every_response_carries_the_security_headers(web, url):
    response = web.get(url)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in policy
    assert "unsafe-inline" not in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_signed_in_pages_carry_the_policy_too(viewer_web):
    for name in ("querylog-dashboard", "querylog-history", "engine-status", "dnsengine-blocklists"):
        assert viewer_web.get(reverse(name))["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_no_template_has_inline_script_style_or_handler():
    """The browser test finds violations on the pages it visits; this finds them in every template."""
    import re

    pattern = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.IGNORECASE)
    offenders = []
    for root, _, files in os.walk(django_settings.BASE_DIR / "templates"):
        for name in files:
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if pattern.search(line):
                        offenders.append(f"{path}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# -- the settings, from the environment ------------------------------------------------------

SHOW = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({k: str(getattr(s, k)) for k in ["
    "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'CSRF_TRUSTED_ORIGINS', 'SECURE_PROXY_SSL_HEADER', "
    "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'SECURE_SSL_REDIRECT', "
    "'GLORYHOLE_TRUSTED_PROXIES', 'GLORYHOLE_WEB_METRICS_OPEN_TO', 'AXES_FAILURE_LIMIT', "
    "'GLORYHOLE_LOGIN_LOCKOUT_SECONDS', 'GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS']}))"
)
SECURITY_VARS = (
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_SSL_REDIRECT",
    "GLORYHOLE_TRUSTED_PROXIES",
    "GLORYHOLE_WEB_METRICS_OPEN_TO",
    "GLORYHOLE_LOGIN_FAILURE_LIMIT",
    "GLORYHOLE_LOGIN_LOCKOUT_SECONDS",
    "GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS",
)


def settings_with(tmp_path, **env) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with only these security variables set."""
    clean = {k: v for k, v in os.environ.items() if k not in SECURITY_VARS}
    clean.update(env, DJANGO_SETTINGS_MODULE="gloryhole_site.settings", GLORYHOLE_ENV_FILE=str(tmp_path / "none.env"))
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=django_settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
def test_the_defaults_are_plain_http_with_no_proxy(tmp_path):
    result = settings_with(tmp_path)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values == {
        "SESSION_COOKIE_SECURE": "False",
        "CSRF_COOKIE_SECURE": "False",
        "CSRF_TRUSTED_ORIGINS": "[]",
        "SECURE_PROXY_SSL_HEADER": "None",
        "SECURE_HSTS_SECONDS": "0",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "False",
        "SECURE_HSTS_PRELOAD": "False",
        "SECURE_SSL_REDIRECT": "False",
        "GLORYHOLE_TRUSTED_PROXIES": "()",
        "GLORYHOLE_WEB_METRICS_OPEN_TO": "()",
        "AXES_FAILURE_LIMIT": "5",
        "GLORYHOLE_LOGIN_LOCKOUT_SECONDS": "60",
        "GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS": "3600",
    }


@pytest.mark.integration
def test_https_behind_a_proxy_is_set_from_the_environment(tmp_path):
    result = settings_with(
        tmp_path,
        SESSION_COOKIE_SECURE="1",
        CSRF_COOKIE_SECURE="yes",
        CSRF_TRUSTED_ORIGINS="https://dns.example.lan, https://dns.example.lan:8443",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
        SECURE_SSL_REDIRECT="1",
        GLORYHOLE_TRUSTED_PROXIES="127.0.0.1, ::1",
        GLORYHOLE_WEB_METRICS_OPEN_TO="10.0.0.5",
        GLORYHOLE_LOGIN_FAILURE_LIMIT="10",
        GLORYHOLE_LOGIN_LOCKOUT_SECONDS="30",
        GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS="86400",
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["SESSION_COOKIE_SECURE"] == values["CSRF_COOKIE_SECURE"] == "True"
    assert values["CSRF_TRUSTED_ORIGINS"] == "['https://dns.example.lan', 'https://dns.example.lan:8443']"
    assert values["SECURE_PROXY_SSL_HEADER"] == "('HTTP_X_FORWARDED_PROTO', 'https')"
    assert values["SECURE_HSTS_SECONDS"] == "31536000"
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] == values["SECURE_HSTS_PRELOAD"] == "True"
    assert values["SECURE_SSL_REDIRECT"] == "True"
    assert values["GLORYHOLE_TRUSTED_PROXIES"] == "(IPv4Network('127.0.0.1/32'), IPv6Network('::1/128'))"
    assert values["GLORYHOLE_WEB_METRICS_OPEN_TO"] == "(IPv4Network('10.0.0.5/32'),)"
    assert (values["AXES_FAILURE_LIMIT"], values["GLORYHOLE_LOGIN_LOCKOUT_SECONDS"]) == ("10", "30")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}, "GLORYHOLE_TRUSTED_PROXIES"),
        ({"SECURE_PROXY_SSL_HEADER": "X Forwarded: https", "GLORYHOLE_TRUSTED_PROXIES": "::1"}, "SECURE_PROXY"),
        ({"GLORYHOLE_TRUSTED_PROXIES": "nginx.local"}, "GLORYHOLE_TRUSTED_PROXIES"),
        ({"GLORYHOLE_WEB_METRICS_OPEN_TO": "10.0.0.0/33"}, "GLORYHOLE_WEB_METRICS_OPEN_TO"),
        ({"CSRF_TRUSTED_ORIGINS": "dns.example.lan"}, "CSRF_TRUSTED_ORIGINS"),
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS"),
        ({"SESSION_COOKIE_SECURE": "sure"}, "SESSION_COOKIE_SECURE"),
        ({"GLORYHOLE_LOGIN_FAILURE_LIMIT": "0"}, "GLORYHOLE_LOGIN_FAILURE_LIMIT"),
        ({"GLORYHOLE_LOGIN_LOCKOUT_SECONDS": "600", "GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS": "60"}, "MAX_SECONDS"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, env, named):
    result = settings_with(tmp_path, **env)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured")
    assert named in last
