"""Guard rails in the Django admin: block entries and wildcard/regex rules, added, changed or switched on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client as WebClient
from django.urls import reverse
from django.utils import timezone

from dnsengine.models import BlockedDomain, Blocklist, BlockRule
from querylog.models import DomainRollup, QueryRollup

ADD_DOMAIN = reverse("admin:dnsengine_blockeddomain_add")
ADD_RULE = reverse("admin:dnsengine_blockrule_add")
RULES = reverse("admin:dnsengine_blockrule_changelist")


@pytest.fixture
def admin_web(db) -> WebClient:
    user = get_user_model().objects.create_superuser("root", password="root-pass-123")
    web = WebClient()
    web.force_login(user)
    return web


@pytest.fixture
def blocklist(db) -> Blocklist:
    return Blocklist.objects.create(name="mine")


def rule(**fields: str) -> dict:
    """An add-rule form as the browser sends it (the admin shows `created` filled in)."""
    return {"enabled": "on", "created_0": "2026-01-01", "created_1": "00:00:00", **fields}


def errors(response, field: str) -> list[str]:
    return response.context["adminform"].form.errors.get(field, [])


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_add_form_shows_the_confirm_box_with_its_explanation(admin_web):
    html = admin_web.get(ADD_DOMAIN).content.decode()
    assert 'name="confirm"' in html
    assert "public suffix" in html


@pytest.mark.parametrize("domain", ["127.0.0.1", "[::1]", "localhost", "a.localhost"])
def test_an_address_or_localhost_is_refused_even_when_confirmed(admin_web, blocklist, domain):
    response = admin_web.post(ADD_DOMAIN, {"blocklist": blocklist.pk, "domain": domain, "confirm": "on"})
    assert response.status_code == 200
    assert errors(response, "domain")
    assert not BlockedDomain.objects.filter(blocklist=blocklist).exists()


def test_a_top_level_domain_needs_the_box_ticked_and_is_then_added(admin_web, blocklist):
    response = admin_web.post(ADD_DOMAIN, {"blocklist": blocklist.pk, "domain": "com"})
    assert response.status_code == 200
    (message,) = errors(response, "confirm")
    assert "single-label name" in message
    assert "blocks com and every name below it" in message
    assert not BlockedDomain.objects.filter(blocklist=blocklist).exists()

    response = admin_web.post(ADD_DOMAIN, {"blocklist": blocklist.pk, "domain": "com", "confirm": "on"}, follow=True)
    assert BlockedDomain.objects.get(blocklist=blocklist).domain == "com"
    assert any(m.startswith("The rule blocks com and every name below it") for m in shown_messages(response))


def test_a_registry_suffix_needs_the_box_ticked(admin_web, blocklist):
    response = admin_web.post(ADD_DOMAIN, {"blocklist": blocklist.pk, "domain": "co.uk"})
    assert "registry suffix" in errors(response, "confirm")[0]
    assert not BlockedDomain.objects.filter(blocklist=blocklist).exists()


def test_a_large_share_of_recent_traffic_needs_the_box_ticked(admin_web, blocklist, settings):
    settings.GLORYHOLE_BLOCK_CONFIRM_SHARE = 25
    hour = (timezone.now() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    DomainRollup.objects.create(bucket=hour, domain="api.busy.example", status="forwarded", count=30)
    DomainRollup.objects.create(bucket=hour, domain="other.example", status="forwarded", count=70)
    QueryRollup.objects.create(bucket=hour, status="forwarded", count=100)
    response = admin_web.post(ADD_DOMAIN, {"blocklist": blocklist.pk, "domain": "busy.example"})
    (message,) = errors(response, "confirm")
    assert "30.0 %" in message
    assert "30 of 100 queries (30.0 %) and 1 name seen in the last 24 h" in message


def test_an_ordinary_name_is_added_normalised_with_what_it_blocks(admin_web, blocklist):
    response = admin_web.post(ADD_DOMAIN, {"blocklist": blocklist.pk, "domain": "Ads.Example.COM."}, follow=True)
    assert BlockedDomain.objects.get(blocklist=blocklist).domain == "ads.example.com"
    assert any("blocks ads.example.com and every name below it" in m for m in shown_messages(response))


def test_changing_only_the_list_of_a_confirmed_entry_asks_nothing(admin_web, blocklist):
    entry = BlockedDomain.objects.create(blocklist=blocklist, domain="com")
    other = Blocklist.objects.create(name="other")
    url = reverse("admin:dnsengine_blockeddomain_change", args=[entry.pk])
    response = admin_web.post(url, {"blocklist": other.pk, "domain": "com"})
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.blocklist == other


@pytest.mark.parametrize(
    ("kind", "pattern", "words"),
    [
        ("wildcard", "*", "root"),
        ("regex", ".*", "root"),
        ("regex", "local", "localhost"),
        ("wildcard", "*.localhost", "localhost"),
    ],
)
def test_a_rule_matching_everything_or_localhost_is_refused(admin_web, kind, pattern, words):
    response = admin_web.post(ADD_RULE, rule(kind=kind, pattern=pattern, confirm="on"))
    assert response.status_code == 200
    assert words in errors(response, "pattern")[0]
    assert not BlockRule.objects.exists()


def test_a_wildcard_over_a_top_level_domain_needs_the_box_ticked(admin_web):
    response = admin_web.post(ADD_RULE, rule(kind="wildcard", pattern="*.com"))
    assert "every name below com" in errors(response, "confirm")[0]
    assert not BlockRule.objects.exists()
    response = admin_web.post(ADD_RULE, rule(kind="wildcard", pattern="*.com", confirm="on"))
    assert response.status_code == 302
    assert BlockRule.objects.get().pattern == "*.com"


def test_a_narrow_regex_is_added_with_what_it_blocks(admin_web):
    pattern = r"(^|\.)doubleclick\.net$"
    response = admin_web.post(ADD_RULE, rule(kind="regex", pattern=pattern), follow=True)
    assert BlockRule.objects.get().pattern == pattern
    assert any("blocks every name that the regular expression" in m for m in shown_messages(response))


def test_an_invalid_regex_is_one_clear_error(admin_web):
    response = admin_web.post(ADD_RULE, rule(kind="regex", pattern="("))
    assert response.status_code == 200
    assert not BlockRule.objects.exists()
    assert any("not a valid regular expression" in e for e in errors(response, "pattern"))


def test_switching_a_broad_rule_on_in_the_list_sends_you_to_its_page(admin_web):
    broad = BlockRule.objects.create(kind="wildcard", pattern="*.co.uk", enabled=False)
    narrow = BlockRule.objects.create(kind="wildcard", pattern="ads*.example.com", enabled=False)
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": str(broad.pk),
        "form-0-enabled": "on",
        "form-1-id": str(narrow.pk),
        "form-1-enabled": "on",
        "_save": "Save",
    }
    response = admin_web.post(RULES, data)
    assert response.status_code == 200  # the changelist again, with the error
    assert "Open the rule to confirm it" in response.content.decode()
    broad.refresh_from_db()
    assert not broad.enabled
