"""Conditional-forwarding rules from the forwarding page: add, change, delete.

Each function runs in one transaction, validates as the admin does (the model's
clean(): the domain normalised, the upstreams parsed as GLORYHOLE_UPSTREAMS is, with
the same messages), leaves a LogEntry and bumps the config generation, so running
engines pick the change up within a few seconds.
"""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION
from django.db import transaction

from dnsengine.models import ForwardingRule
from dnsengine.services.admin_log import log_change
from dnsengine.services.config_generation import config_generation_bump


def forwarding_rule_create(*, user, domain: str, upstreams: str, enabled: bool = True,
                           comment: str = "") -> ForwardingRule:  # fmt: skip
    """A new rule; raises ValidationError (bad domain or upstreams, a rule for the domain exists)."""
    with transaction.atomic():
        rule = ForwardingRule(domain=domain, upstreams=upstreams, enabled=enabled, comment=comment.strip())
        rule.full_clean()
        rule.save()
        log_change(user, rule, ADDITION, f"Created from the forwarding page: {rule}")
        config_generation_bump()
    return rule


def forwarding_rule_update(*, user, rule: ForwardingRule, domain: str, upstreams: str, enabled: bool,
                           comment: str = "") -> ForwardingRule:  # fmt: skip
    """Change a rule (switching it off included); raises ValidationError and then changes nothing."""
    before = f"{rule}{'' if rule.enabled else ' (off)'}"
    with transaction.atomic():
        rule.domain, rule.upstreams, rule.enabled, rule.comment = domain, upstreams, enabled, comment.strip()
        rule.full_clean()
        rule.save()
        after = f"{rule}{'' if rule.enabled else ' (off)'}"
        log_change(user, rule, CHANGE, f"Changed from {before} to {after} on the forwarding page")
        config_generation_bump()
    return rule


def forwarding_rule_delete(*, user, rule: ForwardingRule) -> None:
    with transaction.atomic():
        log_change(user, rule, DELETION, f"Deleted from the forwarding page: {rule}")
        rule.delete()
        config_generation_bump()
