"""The forwarding page: rules read by everyone, added, changed, switched off and deleted by staff."""

from __future__ import annotations

from html import unescape

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.test import Client as WebClient
from django.urls import reverse

from dnsengine.models import ForwardingRule
from dnsengine.services import config_generation_current

URL = reverse("dnsengine-forwarding")
ADD = reverse("dnsengine-forwarding-add")


def edit(rule: ForwardingRule) -> str:
    return reverse("dnsengine-forwarding-edit", args=[rule.pk])


def delete(rule: ForwardingRule) -> str:
    return reverse("dnsengine-forwarding-delete", args=[rule.pk])


@pytest.fixture
def lan(db) -> ForwardingRule:
    return ForwardingRule.objects.create(domain="lan", upstreams="192.168.1.1:53", comment="the router")


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(web):
    assert web.get(URL)["Location"].startswith(reverse("login"))
    assert web.post(ADD, {"domain": "lan", "upstreams": "192.168.1.1"})["Location"].startswith(reverse("login"))
    assert not ForwardingRule.objects.exists()


def test_viewers_read_the_rules_without_forms_and_cannot_change_them(viewer_web, lan):
    html = viewer_web.get(URL).content.decode()
    assert 'data-rule="lan"' in html and "192.168.1.1:53" in html and "the router" in html
    main = html.split("<main>")[1]
    assert "New rule" not in main and "<input" not in main
    assert 'href="/forwarding/"' in html  # in the navigation

    for path, data in [
        (ADD, {"domain": "corp.lan", "upstreams": "10.0.0.1", "enabled": "on"}),
        (edit(lan), {"domain": "lan", "upstreams": "10.0.0.1", "enabled": "on"}),
        (delete(lan), {}),
    ]:
        assert viewer_web.post(path, data).status_code == 403, path
    assert list(ForwardingRule.objects.values_list("domain", "upstreams")) == [("lan", "192.168.1.1:53")]


def test_changes_need_a_csrf_token(staff_user, lan):
    strict = WebClient(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    assert strict.post(ADD, {"domain": "corp.lan", "upstreams": "10.0.0.1"}).status_code == 403
    assert strict.post(delete(lan)).status_code == 403
    assert ForwardingRule.objects.count() == 1
    page = strict.get(URL).content.decode()
    assert "csrfmiddlewaretoken" in page.split(f'id="rule-{lan.pk}"')[1]


def test_staff_add_a_rule_normalised_logged_and_reloaded(staff_web):
    generation = config_generation_current()
    response = staff_web.post(
        ADD, {"domain": "168.192.IN-ADDR.ARPA.", "upstreams": "192.168.1.1, 192.168.1.2:5353", "enabled": "on"},
        follow=True,
    )  # fmt: skip
    rule = ForwardingRule.objects.get()
    assert (rule.domain, rule.upstreams, rule.enabled) == ("168.192.in-addr.arpa", "192.168.1.1:53, 192.168.1.2:5353",
                                                           True)  # fmt: skip
    assert config_generation_current() > generation
    assert LogEntry.objects.get(object_id=str(rule.pk)).action_flag == ADDITION
    assert "now go to" in messages_of(response)[0]
    assert 'data-rule="168.192.in-addr.arpa"' in response.content.decode()


def test_staff_change_and_switch_off_a_rule(staff_web, lan):
    generation = config_generation_current()
    staff_web.post(edit(lan), {"domain": "home.arpa", "upstreams": "192.168.1.254", "comment": "new router"})
    lan.refresh_from_db()
    assert (lan.domain, lan.upstreams, lan.enabled, lan.comment) == ("home.arpa", "192.168.1.254:53", False,
                                                                     "new router")  # fmt: skip
    assert config_generation_current() > generation
    assert LogEntry.objects.filter(object_id=str(lan.pk), action_flag=CHANGE).exists()
    assert 'class="off"' in staff_web.get(URL).content.decode()


def test_staff_delete_a_rule(staff_web, lan):
    generation = config_generation_current()
    pk = lan.pk
    response = staff_web.post(delete(lan), follow=True)
    assert not ForwardingRule.objects.exists()
    assert config_generation_current() > generation
    assert LogEntry.objects.get(object_id=str(pk)).action_flag == DELETION
    assert "deleted" in messages_of(response)[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"domain": "lan", "upstreams": "router.lan"}, "upstreams: 'router.lan' in 'router.lan' is not an IP address"),
        ({"domain": "lan", "upstreams": "192.168.1.1:dns"},
         "upstreams: port 'dns' in '192.168.1.1:dns' is not a number"),
        ({"domain": "lan", "upstreams": ""}, "upstreams is empty: name at least one upstream resolver (host[:port])"),
        ({"domain": "not a domain", "upstreams": "192.168.1.1"}, "'not a domain' is not a valid domain name"),
        ({"domain": "localhost", "upstreams": "192.168.1.1"}, "never leaves this box"),
        ({"domain": "", "upstreams": "192.168.1.1"}, "domain: This field is required."),
    ],
)  # fmt: skip
def test_bad_input_adds_nothing_and_says_why(staff_web, data, message):
    response = staff_web.post(ADD, {**data, "enabled": "on"}, follow=True)
    assert not ForwardingRule.objects.exists()
    assert len(messages_of(response)) == 1
    assert message in unescape(messages_of(response)[0])
    assert messages_of(response)[0].startswith("No rule added: ")


def test_a_second_rule_for_the_same_domain_is_refused(staff_web, lan):
    response = staff_web.post(ADD, {"domain": "LAN", "upstreams": "10.0.0.1", "enabled": "on"}, follow=True)
    assert ForwardingRule.objects.count() == 1
    assert "already exists" in messages_of(response)[0]


def test_a_bad_edit_changes_nothing(staff_web, lan):
    response = staff_web.post(edit(lan), {"domain": "lan", "upstreams": "192.168.1.1:99999", "enabled": "on"},
                              follow=True)  # fmt: skip
    lan.refresh_from_db()
    assert lan.upstreams == "192.168.1.1:53"
    assert "port 99999 in '192.168.1.1:99999' is out of range" in unescape(messages_of(response)[0])


def test_the_table_scrolls_inside_its_card_on_a_phone(staff_web, lan):
    html = staff_web.get(URL).content.decode()
    card = html.split('<section class="card">')[1]
    assert '<div class="scroll">' in card.split('<table class="forwarding">')[0]
    css = open("static/gloryhole/site.css").read()
    assert ".scroll { overflow-x: auto; }" in css and "table.forwarding { min-width:" in css


def test_the_admin_edits_rules_with_the_same_validation_and_a_change_log(admin_client):
    add = reverse("admin:dnsengine_forwardingrule_add")
    generation = config_generation_current()
    bad = admin_client.post(add, {"domain": "lan", "upstreams": "router", "enabled": "on", "created_0": "2026-01-01",
                                  "created_1": "00:00:00"})  # fmt: skip
    assert "upstreams: &#x27;router&#x27; in &#x27;router&#x27; is not an IP address" in bad.content.decode()
    admin_client.post(add, {"domain": "Lan.", "upstreams": "192.168.1.1", "enabled": "on", "created_0": "2026-01-01",
                            "created_1": "00:00:00"})  # fmt: skip
    rule = ForwardingRule.objects.get()
    assert (rule.domain, rule.upstreams) == ("lan", "192.168.1.1:53")
    assert config_generation_current() > generation
    assert LogEntry.objects.filter(object_id=str(rule.pk), action_flag=ADDITION).exists()
