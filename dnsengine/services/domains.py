"""Blocking and allowing names from the web: the manual list, the allowlist and hand-made rules.

The one-click actions of the query history (domain_block, domain_allow) and the
domains page (domain_entry_*) write the same rows: allowlist entries, the
manual list's names ("this name and below") and rules (an exact name is a
wildcard without wildcard characters). Every write is one transaction with a
LogEntry; the saves bump the config generation (dnsengine.signals).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.admin.models import ADDITION, CHANGE, DELETION
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from dnsengine.guardrails import DOMAIN, REGEX, WILDCARD, Verdict, domain_refusal
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, BlockRule, ClientGroup
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
                changed=timezone.now(),
                changed_by=user.get_username(),
            )
            log_change(user, entry, ADDITION, "Allowed from the query history")
        else:
            entry.enabled = True
            entry.include_subdomains = entry.include_subdomains or include_subdomains
            entry.changed, entry.changed_by = timezone.now(), user.get_username()
            entry.save(update_fields=["enabled", "include_subdomains", "changed", "changed_by"])
            log_change(user, entry, CHANGE, "Enabled from the query history")
    return entry


# --- The domains page: every hand-made entry --------------------------------------------

ALLOW, BLOCK = "allow", "block"
EXACT, SUBDOMAINS = "exact", "subdomains"  # and guardrails.WILDCARD, guardrails.REGEX
KINDS = (EXACT, SUBDOMAINS, WILDCARD, REGEX)


@dataclass(frozen=True, slots=True)
class EntryInput:
    """What the domains page's form holds, cleaned: the entry to write."""

    action: str  # ALLOW | BLOCK
    kind: str  # one of KINDS; an allow entry is EXACT or SUBDOMAINS
    value: str  # a normalised name, or the pattern
    comment: str = ""
    enabled: bool = True
    groups: tuple[ClientGroup, ...] = ()


def entry_ref(obj) -> str:
    """The page's name for a row: allow-3, rule-5, listed-7 (a name of the manual list)."""
    if isinstance(obj, AllowedDomain):
        return f"allow-{obj.pk}"
    if isinstance(obj, BlockRule):
        return f"rule-{obj.pk}"
    return f"listed-{obj.pk}"


def entry_by_ref(ref: str):
    """The row a ref names, or None (unknown, a rule of a list, a name of another list)."""
    prefix, _, pk = ref.partition("-")
    if not pk.isdigit():
        return None
    if prefix == "allow":
        return AllowedDomain.objects.filter(pk=pk).first()
    if prefix == "rule":
        return BlockRule.objects.filter(pk=pk, blocklist__isnull=True).first()
    if prefix == "listed":
        return BlockedDomain.objects.filter(pk=pk, blocklist__name=MANUAL_LIST).first()
    return None


def entry_block_verdict(kind: str, value: str) -> Verdict:
    """The guard rails' verdict on a block entry of the domains page (an exact name is a plain wildcard)."""
    if kind == SUBDOMAINS:
        return block_verdict(DOMAIN, value)
    return block_verdict(WILDCARD if kind == EXACT else kind, value)


def _stamp(obj, user) -> None:
    obj.changed = timezone.now()
    obj.changed_by = user.get_username()[:150]


def _set_groups(obj, groups: tuple[ClientGroup, ...]) -> None:
    if set(obj.groups.all()) != set(groups):
        obj.groups.set(groups)


def _manual_list(user) -> Blocklist:
    manual, created = Blocklist.objects.select_for_update().get_or_create(
        name=MANUAL_LIST, defaults={"source": "blocked from the web", "format": Blocklist.Format.DOMAINS}
    )
    if created:
        log_change(user, manual, ADDITION, "Created by the domains page")
    return manual


def _recount(manual: Blocklist) -> None:
    manual.domain_count = BlockedDomain.objects.filter(blocklist=manual).count()
    manual.save(update_fields=["domain_count"])


def _check_block(data: EntryInput, confirm: bool) -> str:
    """The value to store, through the guard rails (raises BlockRefused / BlockNeedsConfirmation)."""
    verdict = entry_block_verdict(data.kind, data.value)
    if verdict.refused:
        raise BlockRefused(verdict)
    if verdict.confirm and not confirm:
        raise BlockNeedsConfirmation(verdict)
    return verdict.target


def _check_allow(data: EntryInput) -> None:
    refused = domain_refusal(data.value)
    if refused and "localhost" not in refused:
        raise ValidationError(refused)


def domain_entry_add(*, user, data: EntryInput, confirm: bool = False):
    """Add an entry of the domains page; returns the row. Raises ValidationError (a duplicate, a bad
    name) or, for a block, BlockRefused / BlockNeedsConfirmation unless `confirm`."""
    if data.action == BLOCK:
        value = _check_block(data, confirm)
        with transaction.atomic():
            if data.kind == SUBDOMAINS:
                if data.groups or not data.enabled:
                    raise ValidationError(
                        'a "this name and below" block is a name of the manual list, on for every group'
                        " while the list is: for groups or an off switch, add a wildcard *.name and an exact name"
                    )
                manual = _manual_list(user)
                row, added = BlockedDomain.objects.get_or_create(blocklist=manual, domain=value)
                if not added:
                    raise ValidationError(f"{value} is already on the manual list")
                _recount(manual)
                log_change(user, manual, CHANGE, f"Blocked {value} from the domains page")
                return row
            kind = WILDCARD if data.kind == EXACT else data.kind
            if BlockRule.objects.filter(kind=kind, pattern=value, blocklist__isnull=True).exists():
                raise ValidationError(f"the rule {kind}:{value} exists already")
            row = BlockRule(kind=kind, pattern=value, enabled=data.enabled, comment=data.comment)
            _stamp(row, user)
            row.full_clean(exclude=["groups"])
            row.save()
            _set_groups(row, data.groups)
            log_change(user, row, ADDITION, "Added from the domains page")
            return row
    _check_allow(data)
    with transaction.atomic():
        if AllowedDomain.objects.filter(domain=data.value).exists():
            raise ValidationError(f"{data.value} is on the allowlist already: edit its entry")
        row = AllowedDomain(
            domain=data.value, include_subdomains=data.kind == SUBDOMAINS, enabled=data.enabled, comment=data.comment
        )
        _stamp(row, user)
        row.save()
        _set_groups(row, data.groups)
        log_change(user, row, ADDITION, "Added from the domains page")
    return row


def domain_entry_update(*, user, row, data: EntryInput, confirm: bool = False):
    """Change an allow entry or a rule in place (a manual-list name: replaced by its new name)."""
    if isinstance(row, BlockedDomain):
        value = _check_block(data, confirm)
        with transaction.atomic():
            if value != row.domain:
                if BlockedDomain.objects.filter(blocklist_id=row.blocklist_id, domain=value).exists():
                    raise ValidationError(f"{value} is already on the manual list")
                old = row.domain
                row.domain = value
                row.save(update_fields=["domain"])
                log_change(user, row.blocklist, CHANGE, f"Replaced {old} by {value} from the domains page")
        return row
    if isinstance(row, BlockRule):
        value = _check_block(data, confirm)
        kind = WILDCARD if data.kind == EXACT else data.kind
        with transaction.atomic():
            clash = BlockRule.objects.filter(kind=kind, pattern=value, blocklist__isnull=True).exclude(pk=row.pk)
            if clash.exists():
                raise ValidationError(f"the rule {kind}:{value} exists already")
            row.kind, row.pattern, row.enabled, row.comment = kind, value, data.enabled, data.comment
            _stamp(row, user)
            row.full_clean(exclude=["groups"])
            row.save()
            _set_groups(row, data.groups)
            log_change(user, row, CHANGE, "Changed from the domains page")
        return row
    _check_allow(data)
    with transaction.atomic():
        if AllowedDomain.objects.filter(domain=data.value).exclude(pk=row.pk).exists():
            raise ValidationError(f"{data.value} is on the allowlist already")
        row.domain, row.include_subdomains = data.value, data.kind == SUBDOMAINS
        row.enabled, row.comment = data.enabled, data.comment
        _stamp(row, user)
        row.save()
        _set_groups(row, data.groups)
        log_change(user, row, CHANGE, "Changed from the domains page")
    return row


def domain_entry_toggle(*, user, row) -> bool:
    """Switch an allow entry or a rule on or off; returns its new state (a manual-list name has none)."""
    if isinstance(row, BlockedDomain):
        raise ValidationError("a name of the manual list is on while the list is: delete it instead")
    with transaction.atomic():
        row.enabled = not row.enabled
        _stamp(row, user)
        row.save(update_fields=["enabled", "changed", "changed_by"])
        log_change(user, row, CHANGE, ("Enabled" if row.enabled else "Disabled") + " from the domains page")
    return row.enabled


def domain_entry_delete(*, user, row, why: str = "Deleted from the domains page") -> str:
    """Delete an entry (also the undo of a one-click allow or block); returns what it was."""
    with transaction.atomic():
        if isinstance(row, BlockedDomain):
            manual = Blocklist.objects.select_for_update().get(pk=row.blocklist_id)
            text = row.domain
            row.delete()
            _recount(manual)
            log_change(user, manual, CHANGE, f"Unblocked {text}: {why.lower()}")
            return text
        text = str(row)
        log_change(user, row, DELETION, why)
        row.delete()
    return text
