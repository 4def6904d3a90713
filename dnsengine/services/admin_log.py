"""Every change made from the web is written to Django admin's LogEntry table."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry


def log_change(user, obj, flag: int, message: str) -> None:
    """Record a change in Django admin's LogEntry table, so /admin/'s history shows who changed what."""
    LogEntry.objects.log_actions(user.pk, [obj], flag, message, single_object=True)
