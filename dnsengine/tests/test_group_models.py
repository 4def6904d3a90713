"""Clients, groups and schedules as stored: the default group, identifiers, generation bumps."""

from __future__ import annotations

from datetime import time

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from dnsengine.models import AllowedDomain, Blocklist, Client, ClientGroup, GroupSchedule, normalize_mac
from dnsengine.services.config_generation import config_generation_current

pytestmark = pytest.mark.django_db


def test_the_migration_creates_exactly_one_default_group():
    assert list(ClientGroup.objects.filter(is_default=True).values_list("name", flat=True)) == ["Default"]


def test_it_refuses_to_delete_the_default_group_even_through_a_queryset():
    ClientGroup.objects.create(name="kids")
    with pytest.raises(ProtectedError), transaction.atomic():
        ClientGroup.objects.get(is_default=True).delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        ClientGroup.objects.all().delete()
    assert ClientGroup.objects.filter(is_default=True).exists()


def test_deleting_a_group_moves_its_clients_to_the_default_group():
    kids = ClientGroup.objects.create(name="kids")
    tablet = Client.objects.create(name="tablet", ip="192.168.1.20", group=kids)
    kids.delete()
    tablet.refresh_from_db()
    assert tablet.group.is_default


def test_a_client_without_a_group_lands_in_the_default_group():
    assert Client.objects.create(name="tv", ip="192.168.1.30").group.is_default


@pytest.mark.parametrize("raw", ["AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff", "aa:bb:cc:dd:ee:ff", " AABBCCDDEEFF "])
def test_it_normalises_a_mac_address(raw):
    assert normalize_mac(raw) == "aa:bb:cc:dd:ee:ff"


def test_a_client_needs_exactly_one_identifier():
    group = ClientGroup.objects.get(is_default=True)
    with pytest.raises(ValidationError):
        Client(name="none", group=group).full_clean()
    with pytest.raises(ValidationError):
        Client(name="two", ip="10.0.0.1", mac="aa:bb:cc:dd:ee:ff", group=group).full_clean()
    client = Client(name="net", cidr="10.1.2.3/24", group=group)
    client.full_clean()
    assert client.cidr == "10.1.2.0/24"
    with pytest.raises(ValidationError):
        Client(name="bad", cidr="10.1.2.300/24", group=group).full_clean()
    with pytest.raises(ValidationError):
        Client(name="bad", mac="aa:bb:cc", group=group).full_clean()


def test_a_group_validates_its_upstreams():
    with pytest.raises(ValidationError):
        ClientGroup(name="x", upstreams="not-an-ip").full_clean()
    ClientGroup(name="x", upstreams="9.9.9.9, [2620:fe::fe]:53").full_clean()


def test_a_schedule_needs_a_day_and_a_non_empty_window():
    group = ClientGroup.objects.get(is_default=True)
    blocklist = Blocklist.objects.create(name="social")
    with pytest.raises(ValidationError):
        GroupSchedule(group=group, blocklist=blocklist, weekdays=0, start=time(21), end=time(7)).full_clean()
    with pytest.raises(ValidationError):
        GroupSchedule(group=group, blocklist=blocklist, start=time(21), end=time(21)).full_clean()
    GroupSchedule(group=group, blocklist=blocklist, start=time(21), end=time(7)).full_clean()


def test_every_change_to_groups_or_memberships_bumps_the_generation():
    seen = [config_generation_current()]

    def bumped() -> bool:
        seen.append(config_generation_current())
        return seen[-1] > seen[-2]

    kids = ClientGroup.objects.create(name="kids")
    assert bumped()
    allowed = AllowedDomain.objects.create(domain="example.org")
    assert bumped()
    allowed.groups.add(kids)
    assert bumped()
    allowed.groups.remove(kids)
    assert bumped()
    Client.objects.create(name="tablet", ip="192.168.1.20", group=kids)
    assert bumped()
    GroupSchedule.objects.create(
        group=kids, blocklist=Blocklist.objects.create(name="social"), start=time(21), end=time(7)
    )
    assert bumped()


def test_the_domain_test_says_which_groups_list_decided_for_a_client_or_a_group():
    from dnsengine.models import BlockedDomain
    from dnsengine.selectors import domain_check

    kids = ClientGroup.objects.create(name="kids")
    work = ClientGroup.objects.create(name="work", blocking_enabled=False)
    social = Blocklist.objects.create(name="social")
    BlockedDomain.objects.create(blocklist=social, domain="social.example")
    social.groups.set([kids])
    Client.objects.create(name="tablet", ip="192.168.1.20", group=kids)

    for_tablet = domain_check("social.example", client="192.168.1.20")
    assert (for_tablet.action, for_tablet.decided_by, for_tablet.group) == (
        "block",
        "list:social (group kids)",
        "kids",
    )
    for_others = domain_check("social.example", client="192.168.1.21")
    assert (for_others.action, for_others.group) == ("none", "Default")
    assert not for_others.list_matches[0].in_group
    assert domain_check("social.example", group=kids).action == "block"
    assert not domain_check("social.example", group=work).blocking_enabled


def test_the_blocklists_page_tests_a_domain_for_a_client(staff_web):
    kids = ClientGroup.objects.create(name="kids")
    Client.objects.create(name="tablet", ip="192.168.1.20", group=kids)
    response = staff_web.get("/blocklists/", {"test": "example.org", "client": "192.168.1.20"})
    assert response.status_code == 200
    assert b"for group kids" in response.content
