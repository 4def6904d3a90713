"""Any admin or ORM change to what the engine serves bumps the config generation.

bulk_create/update/delete bypass signals: code that uses them (the blocklist
import) calls config_generation_bump() itself.
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, BlockRule, LocalRecord
from dnsengine.services.config_generation import config_generation_bump

_WATCHED = (Blocklist, BlockedDomain, AllowedDomain, BlockRule, LocalRecord)


@receiver(post_save)
@receiver(post_delete)
def _bump_on_change(sender, **kwargs) -> None:
    if sender in _WATCHED:
        config_generation_bump()
