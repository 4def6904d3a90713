"""Blocklist writes from the web: dnsengine.services.blocklists, called directly."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry

from dnsengine.blocklists.formats import BlocklistError
from dnsengine.models import BlockedDomain, Blocklist
from dnsengine.services.blocklists import blocklist_toggle, blocklist_upload


def test_toggling_switches_a_list_and_records_who(staff_user):
    blocklist = Blocklist.objects.create(name="ads")

    blocklist_toggle(user=staff_user, blocklist=blocklist)
    assert not Blocklist.objects.get(name="ads").enabled
    blocklist_toggle(user=staff_user, blocklist=blocklist)
    assert Blocklist.objects.get(name="ads").enabled

    messages = list(LogEntry.objects.order_by("pk").values_list("change_message", flat=True))
    assert messages == ["Disabled", "Enabled"]


def test_an_upload_creates_a_list_then_replaces_its_domains(staff_user):
    blocklist_upload(
        user=staff_user, name="mine", upload=io.BytesIO(b"ads.example.com\n"), fmt="auto", filename="a.txt"
    )
    summary = blocklist_upload(
        user=staff_user, name="mine", upload=io.BytesIO(b"track.example.net\n"), fmt="auto", filename="b.txt"
    )

    assert summary.describe()
    blocklist = Blocklist.objects.get(name="mine")
    assert blocklist.source == "upload:b.txt"
    assert list(BlockedDomain.objects.filter(blocklist=blocklist).values_list("domain", flat=True)) == [
        "track.example.net"
    ]
    flags = list(LogEntry.objects.order_by("pk").values_list("action_flag", "change_message"))
    assert flags == [(ADDITION, "Uploaded a.txt"), (CHANGE, "Uploaded b.txt")]


def test_a_refused_upload_changes_nothing_and_records_nothing(staff_user):
    with pytest.raises(BlocklistError):
        blocklist_upload(
            user=staff_user, name="mine", upload=io.BytesIO(b"not a list at all\n" * 50), fmt="auto", filename="x"
        )
    assert not Blocklist.objects.filter(name="mine").exists()
    assert not LogEntry.objects.exists()
