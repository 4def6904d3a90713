"""The groups pages: create, rename, delete, policy, which lists apply, time windows; who may do it."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client as WebClient
from django.urls import reverse

from dnsengine.models import AllowedDomain, Blocklist, BlockRule, Client, ClientGroup, GroupSchedule
from dnsengine.services import config_generation_current

URL = reverse("dnsengine-groups")


def url(name: str, group: ClientGroup) -> str:
    return reverse(name, args=[group.pk])


@pytest.fixture
def default(db) -> ClientGroup:
    return ClientGroup.objects.get(is_default=True)


@pytest.fixture
def kids(db) -> ClientGroup:
    return ClientGroup.objects.create(name="Kids")


@pytest.fixture
def social(db) -> Blocklist:
    return Blocklist.objects.create(name="social")


class Changes:
    """The config generation and the LogEntry count, before and after a change."""

    def __init__(self) -> None:
        self.generation = config_generation_current()
        self.entries = LogEntry.objects.count()

    def assert_recorded(self) -> None:
        assert config_generation_current() > self.generation
        assert LogEntry.objects.count() > self.entries


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(web, kids):
    assert web.get(URL)["Location"].startswith(reverse("login"))
    assert web.get(url("dnsengine-group", kids))["Location"].startswith(reverse("login"))


def test_viewers_read_the_list_and_a_group_without_forms(viewer_web, kids, social):
    GroupSchedule.objects.create(group=kids, blocklist=social, start="21:00", end="07:00")
    html = viewer_web.get(URL).content.decode()
    assert "Kids" in html and "Default" in html and "social 21:00\u201307:00" in html
    assert "New group" not in html
    page = viewer_web.get(url("dnsengine-group", kids)).content.decode()
    assert "every group" in page and "disabled" in page  # checkboxes shown, not editable
    assert "Delete group" not in page and "Add window" not in page


def test_viewers_cannot_change_anything(viewer_web, kids, social):
    posts = [
        (URL + "create/", {"name": "x"}),
        (url("dnsengine-group-rename", kids), {"name": "y"}),
        (url("dnsengine-group-delete", kids), {"confirm": "1"}),
        (url("dnsengine-group-settings", kids), {"upstreams": "192.0.2.1"}),
        (url("dnsengine-group-members", kids), {"kind": "blocklists"}),
        (
            url("dnsengine-schedule-add", kids),
            {"blocklist": social.pk, "weekdays": ["1"], "start": "1:00", "end": "2:00"},
        ),
    ]
    for path, data in posts:
        assert viewer_web.post(path, data).status_code == 403, path
    assert list(ClientGroup.objects.values_list("name", flat=True)) == ["Default", "Kids"]


def test_changes_need_a_csrf_token(staff_user, kids):
    strict = WebClient(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    assert strict.post(reverse("dnsengine-group-create"), {"name": "x"}).status_code == 403
    assert strict.post(url("dnsengine-group-delete", kids), {"confirm": "1"}).status_code == 403
    assert ClientGroup.objects.count() == 2


def test_staff_create_a_group(staff_web):
    changes = Changes()
    response = staff_web.post(reverse("dnsengine-group-create"), {"name": " TV ", "description": "telemetry"})
    group = ClientGroup.objects.get(name="TV")
    assert response["Location"] == url("dnsengine-group", group)
    assert (group.description, group.blocking_enabled, group.is_default) == ("telemetry", True, False)
    changes.assert_recorded()


def test_a_duplicate_name_is_refused(staff_web, kids):
    staff_web.post(reverse("dnsengine-group-create"), {"name": "Kids"})
    assert ClientGroup.objects.filter(name="Kids").count() == 1


def test_staff_rename_a_group(staff_web, kids):
    changes = Changes()
    staff_web.post(url("dnsengine-group-rename", kids), {"name": "Children"})
    kids.refresh_from_db()
    assert kids.name == "Children"
    changes.assert_recorded()


def test_deleting_a_group_moves_its_clients_and_disables_what_applied_to_it_only(staff_web, kids, default, social):
    tablet = Client.objects.create(name="tablet", ip="192.0.2.5", group=kids)
    social.groups.set([kids])
    shared = Blocklist.objects.create(name="shared")
    shared.groups.set([kids, default])
    changes = Changes()

    response = staff_web.post(url("dnsengine-group-delete", kids), {"confirm": "1"})

    assert response["Location"] == URL
    assert not ClientGroup.objects.filter(name="Kids").exists()
    tablet.refresh_from_db()
    assert tablet.group == default
    social.refresh_from_db()
    shared.refresh_from_db()
    # With no group left "social" would apply to every group: it is off instead.
    assert (social.enabled, shared.enabled) == (False, True)
    changes.assert_recorded()


def test_deleting_needs_the_confirm_box(staff_web, kids):
    staff_web.post(url("dnsengine-group-delete", kids), {})
    assert ClientGroup.objects.filter(pk=kids.pk).exists()


def test_the_default_group_cannot_be_deleted(staff_web, default):
    response = staff_web.post(url("dnsengine-group-delete", default), {"confirm": "1"}, follow=True)
    assert ClientGroup.objects.filter(is_default=True).exists()
    assert "cannot be deleted" in response.content.decode()
    assert "Delete group" not in response.content.decode()


def test_staff_set_blocking_upstreams_and_rate_limit_exemption(staff_web, kids):
    changes = Changes()
    staff_web.post(url("dnsengine-group-settings", kids), {"upstreams": " 192.0.2.53:5353 ", "rate_limit_exempt": "on"})
    kids.refresh_from_db()
    assert (kids.blocking_enabled, kids.upstreams, kids.rate_limit_exempt) == (False, "192.0.2.53:5353", True)
    changes.assert_recorded()


def test_bad_upstreams_are_refused(staff_web, kids):
    response = staff_web.post(
        url("dnsengine-group-settings", kids), {"blocking_enabled": "on", "upstreams": "not a host:99999"}, follow=True
    )
    kids.refresh_from_db()
    assert kids.upstreams == ""
    assert "Nothing changed" in response.content.decode()


def test_ticking_a_list_assigns_it_and_unticking_an_every_group_list_gives_it_the_other_groups(
    staff_web, kids, default, social
):
    social.groups.set([default])
    everyone = Blocklist.objects.create(name="everyone")  # no groups: every group
    changes = Changes()

    staff_web.post(url("dnsengine-group-members", kids), {"kind": "blocklists", "selected": [social.pk]})

    assert set(social.groups.all()) == {default, kids}
    assert list(everyone.groups.all()) == [default]  # no longer applies to Kids
    changes.assert_recorded()


def test_unticking_an_items_last_group_is_refused(staff_web, kids):
    entry = AllowedDomain.objects.create(domain="school.example")
    entry.groups.set([kids])
    response = staff_web.post(url("dnsengine-group-members", kids), {"kind": "allowed_domains"}, follow=True)
    assert list(entry.groups.all()) == [kids]
    assert "apply to every group" in response.content.decode()


def test_rules_of_a_regex_list_are_not_offered_one_by_one(staff_web, kids, social):
    own = BlockRule.objects.create(kind="wildcard", pattern="*.tiktok.com")
    BlockRule.objects.create(kind="regex", pattern="^ads", blocklist=social)
    page = staff_web.get(url("dnsengine-group", kids)).content.decode()
    assert "*.tiktok.com" in page and "^ads" not in page
    staff_web.post(url("dnsengine-group-members", kids), {"kind": "block_rules", "selected": [own.pk]})
    assert list(own.groups.all()) == []  # every group already includes Kids: nothing to change


def test_staff_add_and_remove_a_time_window(staff_web, kids, social):
    changes = Changes()
    staff_web.post(
        url("dnsengine-schedule-add", kids),
        {"blocklist": social.pk, "weekdays": ["1", "2", "4", "8", "16"], "start": "21:00", "end": "07:00"},
    )
    window = GroupSchedule.objects.get(group=kids)
    assert (window.weekdays, str(window.start), str(window.end)) == (0b11111, "21:00:00", "07:00:00")
    changes.assert_recorded()

    changes = Changes()
    staff_web.post(reverse("dnsengine-schedule-remove", args=[window.pk]))
    assert not GroupSchedule.objects.exists()
    changes.assert_recorded()


@pytest.mark.parametrize(
    "data",
    [
        {"weekdays": [], "start": "21:00", "end": "07:00"},  # no day
        {"weekdays": ["1"], "start": "21:00", "end": "21:00"},  # empty window
        {"weekdays": ["1"], "start": "25:00", "end": "07:00"},  # not a time
        {"weekdays": ["3"], "start": "21:00", "end": "07:00"},  # not a day's bit
    ],
)
def test_bad_time_windows_are_refused(staff_web, kids, social, data):
    staff_web.post(url("dnsengine-schedule-add", kids), {"blocklist": social.pk, **data})
    assert not GroupSchedule.objects.exists()


def test_changes_are_post_only(staff_web, kids):
    assert staff_web.get(url("dnsengine-group-delete", kids)).status_code == 405


def test_a_groups_page_shows_its_windows_days_for_people(viewer_web, kids, social):
    GroupSchedule.objects.create(group=kids, blocklist=social, weekdays=0b0011111, start="21:00", end="07:00")
    GroupSchedule.objects.create(group=kids, blocklist=social, weekdays=0b1100000, start="09:00", end="12:00")
    html = viewer_web.get(url("dnsengine-group", kids)).content.decode()
    assert ">Mon-Fri</td>" in html and ">Sat, Sun</td>" in html
