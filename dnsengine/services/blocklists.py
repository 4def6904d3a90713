"""Blocklist writes made from the web: switch a list on or off, load an uploaded file.

Loading itself (reading within the limits, writing the difference, subscriptions)
is `dnsengine.blocklists.importer`, shared with the management commands and the
engine's updater; this adds the record of who did it.
"""

from __future__ import annotations

from typing import BinaryIO

from django.contrib.admin.models import ADDITION, CHANGE
from django.db import transaction

from dnsengine.blocklists.importer import ImportSummary, blocklist_load
from dnsengine.models import Blocklist
from dnsengine.services.admin_log import log_change


def blocklist_toggle(*, user, blocklist: Blocklist) -> None:
    with transaction.atomic():
        blocklist.enabled = not blocklist.enabled
        blocklist.save(update_fields=["enabled"])
        log_change(user, blocklist, CHANGE, "Enabled" if blocklist.enabled else "Disabled")


def blocklist_upload(*, user, name: str, upload: BinaryIO, fmt: str, filename: str) -> ImportSummary:
    """Load `upload` into the list `name` (created, or its domains replaced); raises BlocklistError.

    `filename` is the name the file was uploaded under, for the list's source and the messages.
    """
    upload.seek(0)
    existed = Blocklist.objects.filter(name=name).exists()
    summary = blocklist_load(name, upload, fmt, source=f"upload:{filename}"[:1000], display=filename)
    blocklist = Blocklist.objects.get(name=name)
    log_change(user, blocklist, CHANGE if existed else ADDITION, f"Uploaded {filename}")
    return summary
