"""Blocking and allowing one name from the web: the manual list and the allowlist."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE
from django.db import transaction

from dnsengine.guardrails import DOMAIN, Verdict
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist
from dnsengine.selectors import block_verdict
from dnsengine.services.admin_log import log_change

# The list the "block this domain" button adds to; created on first use.
MANUAL_LIST = "manual"


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


def domain_allow(*, user, domain: str, include_subdomains: bool = False) -> AllowedDomain:
    """Allowlist `domain` (creating or re-enabling its entry); the engines reload on the generation bump."""
    with transaction.atomic():
        entry = AllowedDomain.objects.select_for_update().filter(domain=domain).first()
        if entry is None:
            entry = AllowedDomain.objects.create(
                domain=domain,
                include_subdomains=include_subdomains,
                comment=f"allowed from the web by {user.get_username()}"[:200],
            )
            log_change(user, entry, ADDITION, "Allowed from the query history")
        else:
            entry.enabled = True
            entry.include_subdomains = entry.include_subdomains or include_subdomains
            entry.save(update_fields=["enabled", "include_subdomains"])
            log_change(user, entry, CHANGE, "Enabled from the query history")
    return entry
