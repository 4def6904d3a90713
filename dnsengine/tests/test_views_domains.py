"""The domains page: every hand-made allow and block entry, with add, edit, toggle, delete, undo, search."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from dnsengine.models import AllowedDomain, BlockedDomain, BlockRule, ClientGroup
from dnsengine.services import config_generation_current
from dnsengine.services.domains import MANUAL_LIST
from querylog.models import DomainRollup, QueryRollup

URL = reverse("dnsengine-domains")
ADD = reverse("dnsengine-domain-entry-add")


def add(web, value: str, action: str = "allow", kind: str = "exact", **extra):
    data = {"action": action, "kind": kind, "value": value, "enabled": "on", **extra}
    return web.post(ADD, data)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def seed_traffic(counts: dict[str, int]) -> None:
    hour = (timezone.now() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    DomainRollup.objects.bulk_create(
        [DomainRollup(bucket=hour, domain=d, status="forwarded", count=n) for d, n in counts.items()]
    )
    QueryRollup.objects.create(bucket=hour, status="forwarded", count=sum(counts.values()))


# --- permissions -----------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(web):
    assert web.get(URL)["Location"].startswith(reverse("login"))
    assert add(web, "ok.example.com")["Location"].startswith(reverse("login"))
    assert not AllowedDomain.objects.exists()


def test_a_viewer_reads_the_entries_but_gets_no_forms_and_cannot_change_any(viewer_web):
    entry = AllowedDomain.objects.create(domain="ok.example.com", comment="bank")
    html = viewer_web.get(URL).content.decode()
    assert "ok.example.com" in html and "bank" in html
    assert "Add an entry" not in html and "Delete" not in html
    assert add(viewer_web, "new.example.com").status_code == 403
    ref = f"allow-{entry.pk}"
    for name in ("dnsengine-domain-entry-toggle", "dnsengine-domain-entry-delete", "dnsengine-domain-entry-edit"):
        assert viewer_web.post(reverse(name, args=[ref]), {"action": "allow", "kind": "exact",
                                                            "value": "x.example.com"}).status_code == 403  # fmt: skip
    entry.refresh_from_db()
    assert entry.enabled and entry.domain == "ok.example.com"


# --- add ---------------------------------------------------------------------------------


def test_staff_add_an_allow_entry_with_comment_groups_and_who(staff_web):
    group = ClientGroup.objects.create(name="kids")
    before = config_generation_current()
    response = add(staff_web, "Good.Example.COM", kind="subdomains", comment="needed", groups=[group.pk])
    assert response.status_code == 302
    entry = AllowedDomain.objects.get()
    assert (entry.domain, entry.include_subdomains, entry.comment) == ("good.example.com", True, "needed")
    assert list(entry.groups.all()) == [group]
    assert entry.changed_by == "staff" and entry.changed is not None
    assert config_generation_current() > before
    assert LogEntry.objects.filter(object_repr="good.example.com").exists()
    assert f"focus=allow-{entry.pk}" in response["Location"]


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [("exact", "ads.example.com", ("wildcard", "ads.example.com")),
     ("wildcard", "*.ads.test", ("wildcard", "*.ads.test")),
     ("regex", r"^ad[0-9]+\.", ("regex", r"^ad[0-9]+\."))],
)  # fmt: skip
def test_staff_add_block_rules_of_each_kind(staff_web, kind, value, stored):
    assert add(staff_web, value, action="block", kind=kind).status_code == 302
    rule = BlockRule.objects.get()
    assert (rule.kind, rule.pattern) == stored
    assert rule.changed_by == "staff"


def test_a_name_and_below_block_lands_on_the_manual_list(staff_web):
    assert add(staff_web, "tracker.example.net", action="block", kind="subdomains").status_code == 302
    assert list(BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).values_list("domain", flat=True)) == [
        "tracker.example.net"
    ]


@pytest.mark.parametrize(
    ("action", "kind", "value", "words"),
    [
        ("allow", "exact", "not a name!", "is not a valid domain name"),
        ("allow", "exact", "192.168.1.1", "is an IP address"),
        ("allow", "wildcard", "*.example.com", "the allowlist holds names"),
        ("block", "exact", "10.0.0.1", "Not blocked"),
        ("block", "subdomains", "localhost", "never blocked"),
        ("block", "regex", "(unclosed", "Not blocked"),
        ("block", "wildcard", "*", "matches the empty name"),
    ],
)
def test_bad_entries_are_refused_with_a_clear_message(staff_web, action, kind, value, words):
    response = add(staff_web, value, action=action, kind=kind)
    assert response.status_code == 400
    assert words in response.content.decode()
    assert not AllowedDomain.objects.exists() and not BlockRule.objects.exists()
    assert not BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).exists()


def test_a_duplicate_allow_entry_is_refused(staff_web):
    AllowedDomain.objects.create(domain="ok.example.com")
    response = add(staff_web, "ok.example.com")
    assert response.status_code == 400
    assert "on the allowlist already" in response.content.decode()


@pytest.mark.parametrize(("kind", "value"), [("subdomains", "com"), ("exact", "lan"), ("wildcard", "*.co.uk")])
def test_a_top_level_or_single_label_block_asks_first_then_adds_on_confirm(staff_web, kind, value):
    response = add(staff_web, value, action="block", kind=kind)
    assert response.status_code == 200
    assert b'id="block-confirm"' in response.content
    assert not BlockRule.objects.exists() and not BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).exists()
    # The confirmation posts the same form again, to the page's own add view.
    assert ADD.encode() in response.content
    response = add(staff_web, value, action="block", kind=kind, confirm="on")
    assert response.status_code == 302
    assert BlockRule.objects.exists() or BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).exists()


def test_a_block_of_a_large_share_of_recent_traffic_asks_first(staff_web, settings):
    settings.GLORYHOLE_BLOCK_CONFIRM_SHARE = 10.0
    seed_traffic({"cdn.example.com": 50, "other.example.org": 50})
    response = add(staff_web, "*.example.com", action="block", kind="wildcard")
    assert b'id="block-confirm"' in response.content
    assert b"50.0 %" in response.content
    assert not BlockRule.objects.exists()


# --- edit, toggle, delete, undo ---------------------------------------------------------


def test_staff_edit_an_entry(staff_web):
    entry = AllowedDomain.objects.create(domain="ok.example.com")
    url = reverse("dnsengine-domain-entry-edit", args=[f"allow-{entry.pk}"])
    assert b'value="ok.example.com"' in staff_web.get(url).content
    response = staff_web.post(url, {"action": "allow", "kind": "subdomains", "value": "ok2.example.com",
                                    "comment": "renamed"})  # fmt: skip
    assert response.status_code == 302
    entry.refresh_from_db()
    assert (entry.domain, entry.include_subdomains, entry.enabled, entry.comment) == (
        "ok2.example.com", True, False, "renamed")  # fmt: skip
    assert entry.changed_by == "staff"


def test_an_edit_goes_through_the_guard_rails(staff_web):
    rule = BlockRule.objects.create(kind="wildcard", pattern="ads.example.com")
    url = reverse("dnsengine-domain-entry-edit", args=[f"rule-{rule.pk}"])
    response = staff_web.post(url, {"action": "block", "kind": "exact", "value": "127.0.0.1", "enabled": "on"})
    assert response.status_code == 400 and b"Not blocked" in response.content
    rule.refresh_from_db()
    assert rule.pattern == "ads.example.com"


def test_staff_disable_and_enable_an_entry(staff_web):
    rule = BlockRule.objects.create(kind="regex", pattern="^ads")
    url = reverse("dnsengine-domain-entry-toggle", args=[f"rule-{rule.pk}"])
    before = config_generation_current()
    staff_web.post(url)
    rule.refresh_from_db()
    assert not rule.enabled and rule.changed_by == "staff"
    assert config_generation_current() > before
    staff_web.post(url)
    rule.refresh_from_db()
    assert rule.enabled


def test_staff_delete_an_entry_and_a_name_of_the_manual_list(staff_web):
    entry = AllowedDomain.objects.create(domain="ok.example.com")
    staff_web.post(reverse("dnsengine-domain-entry-delete", args=[f"allow-{entry.pk}"]))
    assert not AllowedDomain.objects.exists()
    add(staff_web, "tracker.example.net", action="block", kind="subdomains")
    listed = BlockedDomain.objects.get(blocklist__name=MANUAL_LIST)
    staff_web.post(reverse("dnsengine-domain-entry-delete", args=[f"listed-{listed.pk}"]))
    assert not BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).exists()
    assert listed.blocklist.__class__.objects.get(name=MANUAL_LIST).domain_count == 0


def test_a_name_of_another_list_is_not_an_entry_of_this_page(staff_web):
    from dnsengine.models import Blocklist

    other = Blocklist.objects.create(name="ads")
    row = BlockedDomain.objects.create(blocklist=other, domain="ads.example.com")
    assert staff_web.post(reverse("dnsengine-domain-entry-delete", args=[f"listed-{row.pk}"])).status_code == 404
    assert BlockedDomain.objects.filter(pk=row.pk).exists()


def test_the_history_allow_links_to_the_entry_and_undo_removes_it(staff_web):
    response = staff_web.post(reverse("dnsengine-domain-allow"), {"domain": "ok.example.com"}, follow=True)
    entry = AllowedDomain.objects.get()
    html = response.content.decode()
    link = f"{URL}?q=ok.example.com&amp;focus=allow-{entry.pk}"
    assert link in html  # the flash message's link, rendered as a link
    page = staff_web.get(URL, {"q": "ok.example.com", "focus": f"allow-{entry.pk}"}).content.decode()
    assert ">Undo<" in page
    staff_web.post(reverse("dnsengine-domain-entry-delete", args=[f"allow-{entry.pk}"]), {"undo": "1"})
    assert not AllowedDomain.objects.exists()
    assert LogEntry.objects.filter(change_message="Undone").exists()


def test_the_history_block_links_to_its_manual_list_entry(staff_web):
    response = staff_web.post(reverse("dnsengine-domain-block"), {"domain": "ads.example.com"}, follow=True)
    listed = BlockedDomain.objects.get(blocklist__name=MANUAL_LIST)
    assert f"focus=listed-{listed.pk}" in response.content.decode()


# --- search and pages ----------------------------------------------------------------------


def test_search_by_substring_kind_and_state(viewer_web):
    AllowedDomain.objects.create(domain="bank.example.com", comment="online banking")
    AllowedDomain.objects.create(domain="shop.example.org", enabled=False)
    BlockRule.objects.create(kind="regex", pattern="^ads")

    def found(**params) -> list[str]:
        return [r.value for r in viewer_web.get(URL, params).context["page"]]

    assert found(q="bank") == ["bank.example.com"]
    assert found(q="banking") == ["bank.example.com"]  # the comment
    assert found(kind="regex") == ["^ads"]
    assert found(enabled="off") == ["shop.example.org"]
    assert found(action="allow", enabled="on") == ["bank.example.com"]


def test_the_entries_are_paginated(viewer_web):
    AllowedDomain.objects.bulk_create([AllowedDomain(domain=f"n{i}.example.com") for i in range(60)])
    first = viewer_web.get(URL)
    assert len(first.context["page"]) == 50
    assert b"page=2" in first.content
    assert len(viewer_web.get(URL, {"page": 2}).context["page"]) == 10
