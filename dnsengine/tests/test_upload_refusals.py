"""The web upload refuses what importblocklist refuses, and keeps the list it would have replaced."""

from __future__ import annotations

import random

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from dnsengine.models import BlockedDomain, Blocklist

URL = reverse("dnsengine-blocklists")
GOOD = "".join(f"ads{i}.example.com\n" for i in range(20)).encode()


def upload(web, content: bytes, filename: str = "list.txt"):
    return web.post(
        reverse("dnsengine-blocklist-upload"),
        {"name": "mine", "format": "auto", "file": SimpleUploadedFile(filename, content, "text/plain")},
    )


def messages_of(web) -> str:
    return " ".join(str(m) for m in web.get(URL).context["messages"])


@pytest.fixture
def mine(staff_web):
    assert upload(staff_web, GOOD).status_code == 302
    messages_of(staff_web)  # read, so the next test sees only its own
    return Blocklist.objects.get(name="mine")


def assert_kept() -> None:
    names = set(BlockedDomain.objects.filter(blocklist__name="mine").values_list("domain", flat=True))
    assert names == {f"ads{i}.example.com" for i in range(20)}
    assert Blocklist.objects.get(name="mine").domain_count == 20


def test_an_upload_of_random_text_is_refused_and_the_list_kept(staff_web, mine):
    rng = random.Random(8)
    text = "\n".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz.- ,;:!?") for _ in range(rng.randrange(1, 80)))
        for _ in range(3000)
    )

    response = upload(staff_web, (text + "\nlucky.example.com\n").encode(), "notes.txt")

    assert response.status_code == 302
    messages = messages_of(staff_web)
    assert "Upload refused: notes.txt does not look like a blocklist" in messages
    assert "entries are unreadable" in messages
    assert_kept()
    assert "does not look like a blocklist" in Blocklist.objects.get(name="mine").last_error


def test_an_upload_with_too_many_names_is_refused_and_the_list_kept(staff_web, mine, settings):
    settings.GLORYHOLE_BLOCKLIST_MAX_NAMES = 100

    upload(staff_web, "".join(f"host{i}.example.com\n" for i in range(1000)).encode(), "big.txt")

    assert "big.txt holds more than 100 names" in messages_of(staff_web)
    assert_kept()


def test_an_upload_over_the_list_byte_limit_is_refused_and_the_list_kept(staff_web, mine, settings):
    settings.GLORYHOLE_BLOCKLIST_MAX_BYTES = 4096

    upload(staff_web, b"host.example.com\n" * 1000, "big.txt")

    assert "big.txt is over the 4,096-byte limit" in messages_of(staff_web)
    assert_kept()
