from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, BlockRule
from dnsengine.selectors import domain_check
from dnsengine.services import config_generation_current
from dnsengine.services.domains import MANUAL_LIST

URL = reverse("dnsengine-blocklists")


def make_list(name: str, *domains: str, enabled: bool = True) -> Blocklist:
    blocklist = Blocklist.objects.create(name=name, enabled=enabled, domain_count=len(domains))
    BlockedDomain.objects.bulk_create([BlockedDomain(blocklist=blocklist, domain=d) for d in domains])
    return blocklist


def upload(web, name: str, content: bytes, filename: str = "list.txt", fmt: str = "auto"):
    return web.post(
        reverse("dnsengine-blocklist-upload"),
        {"name": name, "format": fmt, "file": SimpleUploadedFile(filename, content, "text/plain")},
    )


# --- the page and the test box -------------------------------------------------------


@pytest.mark.django_db
def test_it_redirects_anonymous_users_to_login(web):
    assert web.get(URL)["Location"].startswith(reverse("login"))


def test_it_shows_each_list_with_count_state_update_and_error(viewer_web):
    make_list("StevenBlack", "ads.example.com", "tracker.example.net")
    Blocklist.objects.create(name="Broken", enabled=False, last_error="HTTP 404 from the source")
    html = viewer_web.get(URL).content.decode()
    assert "StevenBlack" in html and "Broken" in html
    assert "HTTP 404 from the source" in html
    assert "disabled" in html and "enabled" in html
    assert "Upload a list" not in html  # viewers get no forms


def test_the_test_box_names_the_list_that_blocks_a_subdomain(viewer_web):
    make_list("ads-list", "ads.example.com")
    response = viewer_web.get(URL, {"test": "x.ads.example.com"})
    check = response.context["check"]
    assert check.action == "block"
    assert check.decided_by == "list:ads-list"
    assert b"a parent domain" in response.content


def test_the_test_box_says_the_allowlist_wins(viewer_web):
    make_list("ads-list", "ads.example.com")
    AllowedDomain.objects.create(domain="ads.example.com")
    check = viewer_web.get(URL, {"test": "ads.example.com"}).context["check"]
    assert check.action == "allow"
    assert check.allow_wins
    assert check.decided_by == "allow:ads.example.com"


def test_the_test_box_reports_rules_and_ignores_disabled_lists(viewer_web):
    make_list("off", "ads.example.com", enabled=False)
    BlockRule.objects.create(kind="regex", pattern=r"^ads\.")
    check = viewer_web.get(URL, {"test": "ads.example.com"}).context["check"]
    assert check.action == "block"
    assert check.decided_by == r"regex:^ads\."
    assert [m.list_enabled for m in check.list_matches] == [False]


def test_the_test_box_says_when_nothing_matches(viewer_web):
    response = viewer_web.get(URL, {"test": "fine.example.org"})
    assert response.context["check"].action == "none"
    assert b"not blocked" in response.content


def test_the_test_box_rejects_a_bad_name(viewer_web):
    response = viewer_web.get(URL, {"test": "no such name!"})
    assert response.status_code == 200
    assert response.context["check"] is None
    assert "test" in response.context["test_form"].errors


# --- enable / disable ----------------------------------------------------------------


def test_staff_can_disable_and_enable_a_list(staff_web, staff_user):
    blocklist = make_list("ads-list", "ads.example.com")
    before = config_generation_current()
    response = staff_web.post(reverse("dnsengine-blocklist-toggle", args=[blocklist.pk]))
    assert response.status_code == 302
    blocklist.refresh_from_db()
    assert blocklist.enabled is False
    assert config_generation_current() > before
    assert LogEntry.objects.filter(user=staff_user, object_id=str(blocklist.pk)).exists()
    staff_web.post(reverse("dnsengine-blocklist-toggle", args=[blocklist.pk]))
    blocklist.refresh_from_db()
    assert blocklist.enabled is True


def test_a_viewer_cannot_change_lists(viewer_web):
    blocklist = make_list("ads-list", "ads.example.com")
    assert viewer_web.post(reverse("dnsengine-blocklist-toggle", args=[blocklist.pk])).status_code == 403
    assert upload(viewer_web, "new", b"ads.example.org\n").status_code == 403
    assert viewer_web.post(reverse("dnsengine-domain-allow"), {"domain": "ads.example.com"}).status_code == 403
    assert viewer_web.post(reverse("dnsengine-domain-block"), {"domain": "x.example.com"}).status_code == 403
    blocklist.refresh_from_db()
    assert blocklist.enabled
    assert not Blocklist.objects.filter(name="new").exists()
    assert not AllowedDomain.objects.exists()


@pytest.mark.django_db
def test_anonymous_posts_are_sent_to_login_and_change_nothing(web):
    blocklist = make_list("ads-list", "ads.example.com")
    response = web.post(reverse("dnsengine-blocklist-toggle", args=[blocklist.pk]))
    assert response["Location"].startswith(reverse("login"))
    blocklist.refresh_from_db()
    assert blocklist.enabled


def test_changes_need_a_csrf_token(staff_user):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    blocklist = make_list("ads-list", "ads.example.com")
    assert strict.post(reverse("dnsengine-blocklist-toggle", args=[blocklist.pk])).status_code == 403
    assert strict.post(reverse("dnsengine-domain-allow"), {"domain": "a.example.com"}).status_code == 403
    assert upload(strict, "new", b"ads.example.org\n").status_code == 403
    blocklist.refresh_from_db()
    assert blocklist.enabled


def test_changes_are_post_only(staff_web):
    blocklist = make_list("ads-list", "ads.example.com")
    assert staff_web.get(reverse("dnsengine-blocklist-toggle", args=[blocklist.pk])).status_code == 405
    assert staff_web.get(reverse("dnsengine-domain-allow"), {"domain": "a.example.com"}).status_code == 405


# --- upload --------------------------------------------------------------------------


def test_staff_can_upload_a_hosts_file(staff_web):
    content = b"# a hosts file\n0.0.0.0 ads.example.com\n0.0.0.0 tracker.example.net\n"
    response = upload(staff_web, "uploaded", content, "hosts.txt")
    assert response.status_code == 302
    blocklist = Blocklist.objects.get(name="uploaded")
    assert blocklist.domain_count == 2
    assert blocklist.source == "upload:hosts.txt"
    assert set(BlockedDomain.objects.filter(blocklist=blocklist).values_list("domain", flat=True)) == {
        "ads.example.com",
        "tracker.example.net",
    }
    page = staff_web.get(URL)
    assert "2 domains" in " ".join(str(m) for m in page.context["messages"])


def test_an_upload_to_an_existing_name_replaces_its_domains(staff_web):
    make_list("mine", "old.example.com")
    upload(staff_web, "mine", b"new.example.com\n")
    assert list(BlockedDomain.objects.filter(blocklist__name="mine").values_list("domain", flat=True)) == [
        "new.example.com"
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (b"\x1f\x8b\x08\x00compressed", "not a text file"),
        (b"ads.example.com\n\x00\x01\x02", "not a text file"),
        (b"\xff\xfea\x00d\x00s\x00", "UTF-16"),
        (b"\xc3\x28\xa0\xa1 latin junk \xe9\xe8 ads.example.com", "not UTF-8"),
        (b"", "empty"),
    ],
)
def test_an_upload_that_is_not_text_is_rejected(staff_web, content, reason):
    response = upload(staff_web, "bad", content, "x.bin")
    assert response.status_code == 400
    assert reason in str(response.context["upload_form"].errors["file"])
    assert not Blocklist.objects.filter(name="bad").exists()


def test_an_upload_far_over_the_limit_is_refused_before_it_is_read(staff_web, settings):
    settings.GLORYHOLE_UPLOAD_MAX_BYTES = 1024
    response = upload(staff_web, "big", b"ads.example.com\n" * 10000, "big.txt")  # 160 kB
    assert response.status_code == 302
    assert not Blocklist.objects.filter(name="big").exists()
    messages = " ".join(str(m) for m in staff_web.get(URL).context["messages"])
    assert "larger than" in messages


def test_an_upload_over_the_limit_within_the_envelope_is_a_form_error(staff_web, settings):
    settings.GLORYHOLE_UPLOAD_MAX_BYTES = 100 * 1024
    response = upload(staff_web, "big", b"a.example.com\n" * 8000, "big.txt")  # 112 kB: past the limit, not the guard
    assert response.status_code == 400
    assert "limit" in str(response.context["upload_form"].errors["file"])


def test_a_text_upload_without_any_domain_is_refused_with_a_message(staff_web):
    response = upload(staff_web, "junk", b"hello world, this is not a list\njust words\n", "notes.txt")
    assert response.status_code == 302
    messages = " ".join(str(m) for m in staff_web.get(URL).context["messages"])
    assert "no valid domain" in messages
    assert not Blocklist.objects.filter(name="junk").exists()


def test_an_upload_needs_a_name_and_a_file(staff_web):
    response = staff_web.post(reverse("dnsengine-blocklist-upload"), {"name": "", "format": "auto"})
    assert response.status_code == 400
    errors = response.context["upload_form"].errors
    assert "name" in errors and "file" in errors


# --- allow / block this domain ---------------------------------------------------------


def test_allow_this_domain_overrides_the_list_and_returns_to_the_search(staff_web, staff_user):
    make_list("ads-list", "ads.example.com")
    before = config_generation_current()
    back = reverse("querylog-history") + "?status=blocked"
    response = staff_web.post(reverse("dnsengine-domain-allow"), {"domain": "ads.example.com", "next": back})
    assert response.status_code == 302
    assert response["Location"] == back
    assert AllowedDomain.objects.get(domain="ads.example.com").enabled
    assert domain_check("ads.example.com").action == "allow"
    assert config_generation_current() > before
    assert LogEntry.objects.filter(user=staff_user, change_message__contains="query history").exists()


def test_allow_re_enables_a_disabled_entry(staff_web):
    AllowedDomain.objects.create(domain="ads.example.com", enabled=False)
    staff_web.post(reverse("dnsengine-domain-allow"), {"domain": "ads.example.com"})
    assert AllowedDomain.objects.get(domain="ads.example.com").enabled


def test_block_this_domain_adds_it_to_the_manual_list_and_beats_an_exact_allow(staff_web):
    AllowedDomain.objects.create(domain="tracker.example.com")
    staff_web.post(reverse("dnsengine-domain-block"), {"domain": "tracker.example.com"})
    manual = Blocklist.objects.get(name=MANUAL_LIST)
    assert manual.domain_count == 1
    assert not AllowedDomain.objects.get(domain="tracker.example.com").enabled
    check = domain_check("tracker.example.com")
    assert (check.action, check.decided_by) == ("block", f"list:{MANUAL_LIST}")


def test_block_warns_when_a_parent_allow_entry_still_wins(staff_web):
    AllowedDomain.objects.create(domain="example.com", include_subdomains=True)
    staff_web.post(reverse("dnsengine-domain-block"), {"domain": "x.example.com"})
    messages = [m for m in staff_web.get(URL).context["messages"]]
    assert messages[0].level_tag == "warning"
    assert "allow:*.example.com" in str(messages[0])


def test_an_action_never_redirects_off_site(staff_web):
    response = staff_web.post(
        reverse("dnsengine-domain-allow"), {"domain": "a.example.com", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("querylog-history")


def test_an_action_with_a_bad_domain_changes_nothing(staff_web):
    response = staff_web.post(reverse("dnsengine-domain-allow"), {"domain": "not a domain"})
    assert response.status_code == 302
    assert not AllowedDomain.objects.exists()
