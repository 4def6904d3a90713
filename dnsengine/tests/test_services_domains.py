"""Blocking and allowing one name: dnsengine.services.domains, called directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from dnsengine.models import AllowedDomain, BlockedDomain
from dnsengine.services.domains import MANUAL_LIST, BlockNeedsConfirmation, BlockRefused, domain_allow, domain_block
from querylog.models import DomainRollup, QueryRollup


def seed_traffic(counts: dict[str, int]) -> None:
    hour = (timezone.now() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    DomainRollup.objects.bulk_create(
        [DomainRollup(bucket=hour, domain=d, status="forwarded", count=n) for d, n in counts.items()]
    )
    QueryRollup.objects.create(bucket=hour, status="forwarded", count=sum(counts.values()))


def blocked() -> list[str]:
    return sorted(BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).values_list("domain", flat=True))


# --- domain_block -----------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["127.0.0.1", "[::1]", "::1", "localhost", "printer.localhost", ".", ""])
def test_the_service_refuses_addresses_localhost_and_the_root_even_when_confirmed(staff_user, domain):
    with pytest.raises(BlockRefused) as refused:
        domain_block(user=staff_user, domain=domain, confirm=True)
    assert refused.value.verdict.refused
    assert blocked() == []


@pytest.mark.parametrize("domain", ["com", "co.uk", "github.io", "lan"])
def test_the_service_adds_a_public_suffix_or_single_label_only_when_confirmed(staff_user, domain):
    with pytest.raises(BlockNeedsConfirmation):
        domain_block(user=staff_user, domain=domain)
    assert blocked() == []
    verdict = domain_block(user=staff_user, domain=domain, confirm=True)
    assert verdict.target == domain
    assert blocked() == [domain]
    assert LogEntry.objects.filter(
        change_message__contains=f"Blocked {domain} from the query history (confirmed"
    ).exists()


def test_the_service_asks_before_blocking_a_large_share_of_recent_traffic(staff_user, settings):
    settings.GLORYHOLE_BLOCK_CONFIRM_SHARE = 10
    seed_traffic({"cdn.example.net": 55, "img.cdn.example.net": 5, "example.org": 40})
    with pytest.raises(BlockNeedsConfirmation) as asked:
        domain_block(user=staff_user, domain="cdn.example.net")
    assert "60.0 %" in asked.value.verdict.confirm[0]
    settings.GLORYHOLE_BLOCK_CONFIRM_SHARE = 61
    verdict = domain_block(user=staff_user, domain="cdn.example.net")
    assert verdict.summary == (
        "blocks cdn.example.net and every name below it: 60 of 100 queries (60.0 %) and 2 names seen in the last 24 h"
    )


def test_the_service_normalises_what_it_blocks(staff_user):
    domain_block(user=staff_user, domain=" Ads.Example.COM. ")
    assert blocked() == ["ads.example.com"]


def test_blocking_switches_off_an_exact_allowlist_entry_that_would_override_it(staff_user):
    AllowedDomain.objects.create(domain="ads.example.com")
    domain_block(user=staff_user, domain="ads.example.com")
    assert not AllowedDomain.objects.get(domain="ads.example.com").enabled
    assert LogEntry.objects.filter(change_message="Disabled by 'block this domain'").exists()


# --- domain_allow -----------------------------------------------------------------------


def test_allowing_a_new_name_creates_its_entry_and_records_who(staff_user):
    entry = domain_allow(user=staff_user, domain="cdn.example.net", include_subdomains=True)
    assert entry.enabled and entry.include_subdomains
    assert entry.comment == f"allowed from the web by {staff_user.get_username()}"
    assert LogEntry.objects.filter(object_id=str(entry.pk), change_message="Allowed from the query history").exists()


def test_allowing_a_disabled_name_enables_it_and_never_narrows_its_subdomains(staff_user):
    AllowedDomain.objects.create(domain="cdn.example.net", enabled=False, include_subdomains=True)
    entry = domain_allow(user=staff_user, domain="cdn.example.net", include_subdomains=False)
    assert entry.enabled and entry.include_subdomains
    assert AllowedDomain.objects.count() == 1
    assert LogEntry.objects.filter(change_message="Enabled from the query history").exists()
