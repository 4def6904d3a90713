"""Local DNS records from the web page: add, edit, switch on or off, delete.

Each function runs in one transaction, validates with LocalRecord.clean (the value
syntax of dnsengine.core.localrecords), leaves a LogEntry and bumps the config
generation (the save's signal bumps it too; the explicit bump keeps the rule of
the other services: every change from the web tells the engines).
"""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION
from django.core.exceptions import ValidationError
from django.db import transaction

from dnsengine.models import LocalRecord
from dnsengine.services.admin_log import log_change
from dnsengine.services.config_generation import config_generation_bump


def _check_unique(record: LocalRecord) -> None:
    twins = LocalRecord.objects.filter(name=record.name, type=record.type, value=record.value)
    if record.pk is not None:
        twins = twins.exclude(pk=record.pk)
    if twins.exists():
        raise ValidationError({"value": f"{record.name} already has this {record.type} record"})


def local_record_create(*, user, name: str, type: str, value: str, ttl: int = 300,
                        enabled: bool = True) -> LocalRecord:  # fmt: skip
    """A new record; raises ValidationError with the field's message (clean() normalises name and value)."""
    with transaction.atomic():
        record = LocalRecord(name=name, type=type, value=value, ttl=ttl, enabled=enabled)
        record.full_clean(validate_unique=False, validate_constraints=False)
        _check_unique(record)
        record.save()
        log_change(user, record, ADDITION, "Added from the local DNS page")
        config_generation_bump()
    return record


def local_record_update(*, user, record: LocalRecord, name: str, type: str, value: str, ttl: int,
                        enabled: bool) -> LocalRecord:  # fmt: skip
    before = str(record)
    with transaction.atomic():
        record.name, record.type, record.value, record.ttl, record.enabled = name, type, value, ttl, enabled
        record.full_clean(validate_unique=False, validate_constraints=False)
        _check_unique(record)
        record.save()
        log_change(user, record, CHANGE, f"Changed from {before!r} on the local DNS page")
        config_generation_bump()
    return record


def local_record_set_enabled(*, user, record: LocalRecord, enabled: bool) -> LocalRecord:
    with transaction.atomic():
        record.enabled = enabled
        record.save(update_fields=["enabled"])
        log_change(user, record, CHANGE, f"{'Enabled' if enabled else 'Disabled'} on the local DNS page")
        config_generation_bump()
    return record


def local_record_delete(*, user, record: LocalRecord) -> None:
    with transaction.atomic():
        log_change(user, record, DELETION, "Deleted on the local DNS page")
        record.delete()
        config_generation_bump()
