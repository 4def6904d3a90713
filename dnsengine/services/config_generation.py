"""The config generation: one counter the engines poll to learn that what they serve changed."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dnsengine.models import ConfigGeneration


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
