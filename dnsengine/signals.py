"""Any admin or ORM change to what the engine serves bumps the config generation.

bulk_create/update/delete bypass signals: code that uses them (the blocklist
import) calls config_generation_bump() itself.
"""

from __future__ import annotations

from django.db.models import ProtectedError
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver

from dnsengine.models import (
    AllowedDomain,
    BlockedDomain,
    Blocklist,
    BlockRule,
    Client,
    ClientGroup,
    ForwardingRule,
    GroupSchedule,
    LocalRecord,
)
from dnsengine.services.config_generation import config_generation_bump

_WATCHED = (Blocklist, BlockedDomain, AllowedDomain, BlockRule, LocalRecord, ClientGroup, Client, GroupSchedule)
_WATCHED += (ForwardingRule,)  # conditional forwarding: the snapshot's routes
# The group memberships of lists, allow entries and rules: their own tables, their own signal.
_WATCHED_M2M = (Blocklist.groups.through, AllowedDomain.groups.through, BlockRule.groups.through)


@receiver(post_save)
@receiver(post_delete)
def _bump_on_change(sender, **kwargs) -> None:
    if sender in _WATCHED:
        config_generation_bump()


@receiver(m2m_changed)
def _bump_on_membership_change(sender, action, **kwargs) -> None:
    if sender in _WATCHED_M2M and action in ("post_add", "post_remove", "post_clear"):
        config_generation_bump()


@receiver(pre_delete, sender=ClientGroup)
def _keep_default_group(sender, instance, **kwargs) -> None:
    # Every client not assigned elsewhere is in it: it must always exist. Also stops
    # queryset deletes, which send pre_delete for each row when a receiver is connected.
    if instance.is_default:
        raise ProtectedError("The default group cannot be deleted.", {instance})
