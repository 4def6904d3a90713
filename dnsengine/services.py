"""Writes to the engine's configuration tables."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dnsengine.guardrails import DOMAIN, Verdict
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, ConfigGeneration
from dnsengine.selectors import block_verdict

# The list the "block this domain" button adds to; created on first use.
MANUAL_LIST = "manual"


def config_generation_bump() -> None:
    """Tell every engine polling the database that its configuration changed."""
    now = timezone.now()
    with transaction.atomic():
        updated = ConfigGeneration.objects.filter(pk=1).update(value=F("value") + 1, changed_at=now)
        if not updated:
            ConfigGeneration.objects.get_or_create(pk=1, defaults={"value": 1, "changed_at": now})


def config_generation_current() -> int:
    row = ConfigGeneration.objects.filter(pk=1).values_list("value", flat=True).first()
    return row or 0


def log_change(user, obj, flag: int, message: str) -> None:
    """Record a change in Django admin's LogEntry table, so /admin/'s history shows who changed what."""
    LogEntry.objects.log_actions(user.pk, [obj], flag, message, single_object=True)


class BlockNotAdded(Exception):
    """A block rule the guard rails stopped; `verdict` says why and what it would have blocked."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.refused or "; ".join(verdict.confirm))
        self.verdict = verdict


class BlockRefused(BlockNotAdded):
    """Never added, confirmed or not (an address, localhost, the root, an invalid name)."""


class BlockNeedsConfirmation(BlockNotAdded):
    """Added only when asked again with confirm=True (a public suffix, a single label, a large share)."""


def domain_block(*, user, domain: str, confirm: bool = False, source: str = "the query history") -> Verdict:
    """Add `domain` to the manual list, through the guard rails; returns their verdict.

    Every way a person blocks a name (the history's and the blocklists page's
    button, any API) goes through here. Raises BlockRefused, or
    BlockNeedsConfirmation unless `confirm`. Also switches off an exact
    allowlist entry that would override the new block.
    """
    verdict = block_verdict(DOMAIN, domain)
    if verdict.refused:
        raise BlockRefused(verdict)
    if verdict.confirm and not confirm:
        raise BlockNeedsConfirmation(verdict)
    domain = verdict.target
    with transaction.atomic():
        manual, created = Blocklist.objects.select_for_update().get_or_create(
            name=MANUAL_LIST, defaults={"source": "blocked from the web", "format": Blocklist.Format.DOMAINS}
        )
        if created:
            log_change(user, manual, ADDITION, "Created by the first 'block this domain'")
        _, added = BlockedDomain.objects.get_or_create(blocklist=manual, domain=domain)
        if added:
            manual.domain_count = BlockedDomain.objects.filter(blocklist=manual).count()
            manual.save(update_fields=["domain_count"])
            confirmed = " (confirmed: " + "; ".join(verdict.confirm) + ")" if verdict.confirm else ""
            log_change(user, manual, CHANGE, f"Blocked {domain} from {source}{confirmed}")
        for entry in AllowedDomain.objects.filter(domain=domain, enabled=True):
            entry.enabled = False
            entry.save(update_fields=["enabled"])
            log_change(user, entry, CHANGE, "Disabled by 'block this domain'")
    return verdict
