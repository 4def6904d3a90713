"""/settings/: staff save engine settings, checked with the environment's own parsers; the environment wins."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from dnsengine.engine_settings import BY_NAME, live_settings_current
from dnsengine.models import EngineSetting
from dnsengine.services.config_generation import config_generation_current

URL = "/settings/"


def env_message(monkeypatch, name: str, raw: str) -> str:
    """What start-up says of `raw` in `name`: settings.py's reader (and EngineConfig's parser)."""
    monkeypatch.setenv(name, raw)
    setting = BY_NAME[name].setting
    try:
        value = setting.read()
        if setting.check is not None:
            setting.check(value, name)
    except (ImproperlyConfigured, ValueError) as exc:
        return str(exc)
    raise AssertionError(f"{name}={raw!r} was accepted")


def test_staff_saves_settings_and_the_generation_goes_up(staff_web):
    before = config_generation_current()
    response = staff_web.post(URL, {"GLORYHOLE_UPSTREAMS": "192.0.2.53, [2001:db8::53]:5353",
                                    "GLORYHOLE_QUERY_LOG_WORKERS": "4"})  # fmt: skip
    assert response.status_code == 302
    assert dict(EngineSetting.objects.values_list("name", "value")) == {
        "GLORYHOLE_UPSTREAMS": "192.0.2.53, [2001:db8::53]:5353",
        "GLORYHOLE_QUERY_LOG_WORKERS": "4",
    }
    assert config_generation_current() == before + 1
    current = live_settings_current()
    assert current["GLORYHOLE_QUERY_LOG_WORKERS"] == 4
    page = staff_web.get(URL).content.decode()
    assert 'value="192.0.2.53, [2001:db8::53]:5353"' in page
    assert "/settings/privacy/" in page
    assert "restart needed" in page and "GLORYHOLE_DNS_PORT" in page
    assert 'data-field="GLORYHOLE_DNS_PROCESSES">Engine processes: <code>1</code>' in page


def test_a_blank_field_clears_the_saved_value_and_a_missing_one_keeps_it(staff_web):
    EngineSetting.objects.create(name="GLORYHOLE_BLOCK_TTL", value="60")
    EngineSetting.objects.create(name="GLORYHOLE_CACHE_SIZE", value="500")
    staff_web.post(URL, {"GLORYHOLE_BLOCK_TTL": ""})
    assert dict(EngineSetting.objects.values_list("name", "value")) == {"GLORYHOLE_CACHE_SIZE": "500"}


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("GLORYHOLE_UPSTREAMS", "dns.example"),
        ("GLORYHOLE_UPSTREAMS", "192.0.2.1:70000"),
        ("GLORYHOLE_BLOCKING_MODE", "sinkhole"),
        ("GLORYHOLE_BLOCKING_MODE", "ip:nowhere"),
        ("GLORYHOLE_BLOCK_TTL", "ten"),
        ("GLORYHOLE_BLOCK_TTL", "-1"),
        ("GLORYHOLE_CACHE_SIZE", "20000000"),
        ("GLORYHOLE_RELOAD_INTERVAL", "0.01"),
        ("GLORYHOLE_RELOAD_INTERVAL", "nan"),
        ("GLORYHOLE_QUERY_LOG_MODE", "fast"),
        ("GLORYHOLE_QUERY_LOG_WORKERS", "0"),
        ("GLORYHOLE_QUERY_LOG_BATCH", "1.5"),
        ("GLORYHOLE_QUERY_LOG_BUFFER", "99999999999"),
        ("GLORYHOLE_ROLLUP_RETENTION_DAYS", "4000"),
    ],
)
def test_a_bad_value_gets_the_environments_message(staff_web, monkeypatch, name, raw):
    expected = env_message(monkeypatch, name, raw)
    monkeypatch.delenv(name)

    response = staff_web.post(URL, {name: raw})

    assert response.status_code == 200
    assert response.context["form"].errors[name] == [expected]
    assert not EngineSetting.objects.exists()


def test_ttl_clamps_out_of_order_get_the_start_up_message(staff_web):
    response = staff_web.post(URL, {"GLORYHOLE_CACHE_MIN_TTL": "600", "GLORYHOLE_CACHE_MAX_TTL": "60"})
    assert response.context["form"].errors["GLORYHOLE_CACHE_MIN_TTL"] == [
        "GLORYHOLE_CACHE_MIN_TTL=600 is above GLORYHOLE_CACHE_MAX_TTL=60"
    ]
    assert not EngineSetting.objects.exists()


def test_a_value_the_environment_sets_is_read_only(staff_web, settings):
    settings.GLORYHOLE_SET_IN_ENVIRONMENT = frozenset({"GLORYHOLE_BLOCKING_MODE"})
    settings.GLORYHOLE_BLOCKING_MODE = "nxdomain"

    page = staff_web.get(URL).content.decode()
    assert "fixed by GLORYHOLE_BLOCKING_MODE" in page
    assert 'name="GLORYHOLE_BLOCKING_MODE" value="nxdomain"' in page and "disabled" in page

    staff_web.post(URL, {"GLORYHOLE_BLOCKING_MODE": "refused", "GLORYHOLE_BLOCK_TTL": "30"})
    assert dict(EngineSetting.objects.values_list("name", "value")) == {"GLORYHOLE_BLOCK_TTL": "30"}
    assert live_settings_current()["GLORYHOLE_BLOCKING_MODE"] == "nxdomain"


def test_viewers_and_anonymous_users_cannot_see_or_change_settings(viewer_web, web):
    assert viewer_web.get(URL).status_code == 403
    assert viewer_web.post(URL, {"GLORYHOLE_BLOCK_TTL": "30"}).status_code == 403
    assert web.get(URL).status_code == 302
    assert not EngineSetting.objects.exists()


def test_staff_see_the_settings_link(staff_web, viewer_web):
    assert 'href="/settings/"' in staff_web.get("/").content.decode()
    assert 'href="/settings/"' not in viewer_web.get("/").content.decode()
