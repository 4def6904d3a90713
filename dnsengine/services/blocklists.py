"""Blocklist writes made from the web: switch a list on or off, load an uploaded file; subscribe by
URL, edit, delete, and "fetch now".

Fetch now runs in a daemon thread of the web process that took the request (the
`blocklist-fetch` thread), not in the engine's updater: the person waits for
it, and the updater looks for due lists only every minute. Its state is on the
list's row (pending, running, done, failed), claimed with a conditional
UPDATE, so it is right with any number of web workers: one starts it, any
answers the page's polling. A fetch whose worker died is shown as interrupted
after the longest a fetch may take, and may be asked for again.

Loading itself (reading within the limits, writing the difference, subscriptions)
is `dnsengine.blocklists.importer`, shared with the management commands and the
engine's updater; this adds the record of who did it.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import BinaryIO

from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, DELETION
from django.db import close_old_connections, connections, transaction
from django.db.models import Q
from django.utils import timezone

from dnsengine.blocklists.formats import BlocklistError
from dnsengine.blocklists.importer import CLAIM_FOR, FAILED, ImportSummary, blocklist_load, blocklist_update
from dnsengine.models import Blocklist, FetchState
from dnsengine.services.admin_log import log_change
from dnsengine.services.config_generation import config_generation_bump

logger = logging.getLogger(__name__)


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


# --- Subscriptions from the lists page ----------------------------------------------------


def blocklist_subscribe(*, user, name: str, url: str, fmt: str, groups, enabled: bool = True) -> Blocklist:
    """Create a subscription; the caller asks for its first fetch (blocklist_fetch_request)."""
    with transaction.atomic():
        blocklist = Blocklist.objects.create(name=name, url=url, source=url, format=fmt, enabled=enabled)
        blocklist.groups.set(groups)
        log_change(user, blocklist, ADDITION, f"Subscribed to {url} from the lists page")
    return blocklist


def blocklist_edit(*, user, blocklist: Blocklist, name: str, url: str, fmt: str, groups, enabled: bool) -> None:
    with transaction.atomic():
        changed_url = url != blocklist.url
        blocklist.name, blocklist.url, blocklist.format, blocklist.enabled = name, url, fmt, enabled
        fields = ["name", "url", "format", "enabled"]
        if changed_url:
            # A new address: its old validators mean nothing there, and it is due at once.
            blocklist.etag = blocklist.last_modified = ""
            blocklist.next_update = None
            fields += ["etag", "last_modified", "next_update"]
        blocklist.save(update_fields=fields)
        if set(blocklist.groups.all()) != set(groups):
            blocklist.groups.set(groups)
        log_change(user, blocklist, CHANGE, "Changed from the lists page")


def blocklist_delete(*, user, blocklist: Blocklist) -> None:
    with transaction.atomic():
        log_change(user, blocklist, DELETION, f"Deleted from the lists page ({blocklist.domain_count} names)")
        blocklist.delete()
    # bulk: the CASCADE of a big list's names sends no signal per row; say it once.
    config_generation_bump()


def _fetch_stale_after() -> timedelta:
    # Longer than any fetch may take: a "running" older than this lost its worker (a restart).
    return timedelta(seconds=settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS + 600)


def blocklist_fetch_active(blocklist: Blocklist, now=None) -> bool:
    """A fetch-now is pending or running, and not left behind by a web worker that went away."""
    now = now or timezone.now()
    if blocklist.fetch_state not in (FetchState.PENDING, FetchState.RUNNING):
        return False
    return blocklist.fetch_requested is not None and now - blocklist.fetch_requested < _fetch_stale_after()


def blocklist_fetch_request(*, user, blocklist: Blocklist) -> bool:
    """Mark the list for a fetch now and start it in a background thread; False if one is under way.

    The state is a row in the database, claimed with one conditional UPDATE, so
    with several web workers exactly one request starts a fetch and every worker
    answers the page's polling with the same state.
    """
    if not blocklist.url:
        raise BlocklistError("the list has no URL to fetch from")
    now = timezone.now()
    idle = ~Q(fetch_state__in=[FetchState.PENDING, FetchState.RUNNING]) | Q(
        fetch_requested__lt=now - _fetch_stale_after()
    )
    claimed = Blocklist.objects.filter(Q(pk=blocklist.pk) & idle).update(
        fetch_state=FetchState.PENDING, fetch_requested=now, fetch_message=""
    )
    if not claimed:
        return False
    log_change(user, blocklist, CHANGE, "Fetch now from the lists page")
    # After the commit: the thread's own connection must see the PENDING row.
    transaction.on_commit(lambda: blocklist_fetch_start(blocklist.pk))
    return True


def blocklist_fetch_start(blocklist_id: int) -> None:
    """Run the fetch in a daemon thread of this process (the request returns at once)."""
    threading.Thread(target=blocklist_fetch_run, args=(blocklist_id,), name="blocklist-fetch", daemon=True).start()


def blocklist_fetch_run(blocklist_id: int) -> None:
    """Download and import one list now, recording pending -> running -> done/failed on its row."""
    try:
        close_old_connections()
        # Claimed like a due list (importer._claim), so an engine's updater leaves it to this fetch.
        started = Blocklist.objects.filter(pk=blocklist_id, fetch_state=FetchState.PENDING).update(
            fetch_state=FetchState.RUNNING, next_update=timezone.now() + CLAIM_FOR
        )
        if not started:
            return
        blocklist = Blocklist.objects.get(pk=blocklist_id)
        outcome = blocklist_update(blocklist, force=True)
        state = FetchState.FAILED if outcome.status == FAILED else FetchState.DONE
        Blocklist.objects.filter(pk=blocklist_id).update(fetch_state=state, fetch_message=outcome.describe())
    except Exception as exc:  # the web process keeps serving; the page shows why
        logger.exception("fetch now of blocklist %s failed", blocklist_id)
        Blocklist.objects.filter(pk=blocklist_id).update(fetch_state=FetchState.FAILED, fetch_message=str(exc))
    finally:
        connections.close_all()


def blocklist_fetch_status(blocklist: Blocklist) -> dict:
    """The JSON the lists page polls while a fetch runs."""
    state = blocklist.fetch_state
    if state in (FetchState.PENDING, FetchState.RUNNING) and not blocklist_fetch_active(blocklist):
        state, message = FetchState.FAILED, "interrupted (the web process restarted): fetch again"
    else:
        message = blocklist.fetch_message
    return {
        "id": blocklist.pk,
        "name": blocklist.name,
        "state": state,
        "message": message,
        "domain_count": blocklist.domain_count,
        "last_loaded": blocklist.last_loaded.isoformat() if blocklist.last_loaded else None,
        "last_error": blocklist.last_error,
    }
