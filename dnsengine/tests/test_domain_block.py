"""Guard rails on "block this domain": the button's pages and the start-up check of their setting.

The service they go through (dnsengine.services.domains.domain_block) is tested in test_services_domains.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dnsengine.models import BlockedDomain
from dnsengine.services.domains import MANUAL_LIST
from gloryhole_site.testing import ROOT
from querylog.models import DomainRollup, QueryRollup

BLOCK = reverse("dnsengine-domain-block")
HISTORY = reverse("querylog-history")


def seed_traffic(counts: dict[str, int]) -> None:
    hour = (timezone.now() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    DomainRollup.objects.bulk_create(
        [DomainRollup(bucket=hour, domain=d, status="forwarded", count=n) for d, n in counts.items()]
    )
    QueryRollup.objects.create(bucket=hour, status="forwarded", count=sum(counts.values()))


def blocked() -> list[str]:
    return sorted(BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).values_list("domain", flat=True))


def messages_of(web) -> list[str]:
    return [str(m) for m in web.get(HISTORY).context["messages"]]


# --- the one-click button (history and blocklists page) ------------------------------


@pytest.mark.parametrize(
    ("domain", "words"),
    [("127.0.0.1", "IP address"), ("[::1]", "IP address"), ("localhost", "localhost"), (".", "root")],
)
def test_the_button_refuses_with_a_message_and_changes_nothing(staff_web, domain, words):
    response = staff_web.post(BLOCK, {"domain": domain, "next": HISTORY + "?status=forwarded"})
    assert response.status_code == 302
    assert response["Location"] == HISTORY + "?status=forwarded"
    assert blocked() == []
    shown = messages_of(staff_web)
    assert shown[0].startswith("Not blocked: ")
    assert words in shown[0]


def test_the_button_asks_before_blocking_a_top_level_domain_then_blocks_on_confirm(staff_web):
    seed_traffic({"www.example.com": 70, "ads.example.com": 10, "example.org": 20})
    back = HISTORY + "?domain=x%3D1.example.com"
    response = staff_web.post(BLOCK, {"domain": "com", "next": back})
    assert response.status_code == 200
    assert blocked() == []
    html = response.content.decode()
    assert "Block com?" in html
    assert "single-label name" in html
    assert "blocks com and every name below it: 80 of 100 queries (80.0 %) and 2 names seen in the last 24 h" in html
    assert 'name="confirm" value="on"' in html
    assert f'href="{back}"' in html  # Cancel goes back where the person came from

    response = staff_web.post(BLOCK, {"domain": "com", "next": back, "confirm": "on"})
    assert response.status_code == 302
    assert response["Location"] == back
    assert blocked() == ["com"]
    assert any("The rule blocks com and every name below it" in m for m in messages_of(staff_web))


def test_the_confirmation_page_has_no_inline_script_or_style(staff_web):
    html = staff_web.post(BLOCK, {"domain": "co.uk"}).content.decode()
    # Scripts only from files (base.html's nav.js): none with a body.
    assert html.count("<script") == len(re.findall(r'<script src="[^"]+"( defer)?></script>', html))
    assert "style=" not in html
    assert "<style" not in html


def test_the_confirmation_page_never_sends_anyone_off_site(staff_web):
    html = staff_web.post(BLOCK, {"domain": "co.uk", "next": "https://evil.example/"}).content.decode()
    assert "evil.example" not in html
    assert f'href="{HISTORY}"' in html


def test_an_ordinary_block_says_what_it_blocks(staff_web):
    seed_traffic({"ads.tracker.example": 2, "tracker.example": 1, "example.org": 97})
    staff_web.post(BLOCK, {"domain": "tracker.example"})
    assert blocked() == ["tracker.example"]
    (message,) = messages_of(staff_web)
    assert "blocks tracker.example and every name below it: 3 of 100 queries (3.0 %) and 2 names" in message


def test_a_viewer_gets_no_confirmation_page(viewer_web):
    assert viewer_web.post(BLOCK, {"domain": "com"}).status_code == 403


def test_the_blocklists_page_offers_no_block_button_for_a_refused_name(staff_web):
    url = reverse("dnsengine-blocklists")
    assert "Block this domain" not in staff_web.get(url, {"test": "127.0.0.1"}).content.decode()
    assert "Block this domain" not in staff_web.get(url, {"test": "localhost"}).content.decode()
    assert "Block this domain" in staff_web.get(url, {"test": "ads.example.com"}).content.decode()


# --- the setting -----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("raw", ["150", "-1", "lots"])
def test_a_bad_confirm_share_stops_start_up_naming_the_variable(raw):
    env = {**os.environ, "GLORYHOLE_BLOCK_CONFIRM_SHARE": raw}
    result = subprocess.run(
        [sys.executable, "-c", "import gloryhole_site.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "GLORYHOLE_BLOCK_CONFIRM_SHARE" in result.stderr
