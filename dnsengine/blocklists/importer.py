"""Writes for blocklists: read a list file within the limits, load it into the database,
record a failed load, refresh subscriptions from their URL. The row-level SQL is in
dnsengine.blocklists.store.

Shared by `manage.py importblocklist`, the web upload, `manage.py updateblocklists`
and the engine's scheduled updater (dnsengine.runtime.updater).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dnsengine.blocklists import store
from dnsengine.blocklists.fetch import Progress, fetch_blocklist
from dnsengine.blocklists.formats import (
    BlocklistError,
    BlocklistTooLarge,
    ParseResult,
    check_mostly_entries,
    describe_skipped,
    read_blocklist,
    read_blocklist_file,
)
from dnsengine.models import BlockedDomain, Blocklist, BlocklistUpdate
from dnsengine.services import config_generation_bump

logger = logging.getLogger(__name__)

# Rounds of "compare with what the database holds, write the difference" before an
# import gives up: a second round runs only when another import of the same list
# changed it at the same time.
_ROUNDS = 3


@dataclass(slots=True)
class ImportSummary:
    name: str
    created: bool
    domains: int
    added: int
    removed: int
    allowed_added: int
    format: str
    lines: int
    comments: int
    ignored_modifiers: int
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # database work only; parsing is timed by the caller
    # Regex lists: their patterns, stored as BlockRule rows of the list.
    rules: int = 0
    rules_added: int = 0
    rules_removed: int = 0

    @property
    def entries(self) -> int:
        return self.domains + self.rules

    @property
    def entries_added(self) -> int:
        return self.added + self.rules_added

    @property
    def entries_removed(self) -> int:
        return self.removed + self.rules_removed

    def describe(self) -> str:
        verb = "created" if self.created else "updated"
        if self.format == "regex":
            held = f"{self.rules:,} regex rules (+{self.rules_added:,} / -{self.rules_removed:,})"
        else:
            held = f"{self.domains:,} domains (+{self.added:,} / -{self.removed:,})"
        text = (
            f'Blocklist "{self.name}" {verb}: {held}, format {self.format}; '
            f"{self.lines:,} lines read, {self.comments:,} comment or blank, "
            f"skipped {describe_skipped(self.skipped)}"
        )
        if self.ignored_modifiers:
            text += f"; {self.ignored_modifiers:,} rules kept without their modifiers"
        if self.allowed_added:
            text += f"; {self.allowed_added:,} allowed domains added from @@ exceptions"
        return text


def blocklist_read(file: str | os.PathLike[str] | BinaryIO, fmt: str = "auto", *, display: str = "") -> ParseResult:
    """Parse a list file (a path, or an open binary file such as an upload) within the size limits.

    BlocklistError, naming the setting to raise, when it is over
    GLORYHOLE_BLOCKLIST_MAX_BYTES or GLORYHOLE_BLOCKLIST_MAX_NAMES (reading
    stops at the limit), and when it is no usable list (see read_blocklist).
    """
    limits = {"max_bytes": settings.GLORYHOLE_BLOCKLIST_MAX_BYTES, "max_names": settings.GLORYHOLE_BLOCKLIST_MAX_NAMES}
    try:
        if isinstance(file, (str, os.PathLike)):
            return read_blocklist_file(file, fmt, **limits)
        return read_blocklist(file, fmt, display=display or str(getattr(file, "name", "the file")), **limits)
    except BlocklistTooLarge as exc:
        raise BlocklistError(f"{exc} (GLORYHOLE_BLOCKLIST_MAX_{exc.limit.upper()})") from None


def blocklist_load(
    name: str,
    file: str | os.PathLike[str] | BinaryIO,
    fmt: str = "auto",
    *,
    source: str = "",
    display: str = "",
    enabled: bool | None = None,
) -> ImportSummary:
    """Read a list file within the limits (blocklist_read) and make it the contents of the list `name`.

    What `manage.py importblocklist` and the web upload do. On any refusal the
    list keeps what it holds, the reason is stored as its last error (when it
    exists) and BlocklistError is raised.
    """
    try:
        result = blocklist_read(file, fmt, display=display)
        return blocklist_import(name, result, source=source, enabled=enabled)
    except BlocklistError as exc:
        blocklist_record_error(name, str(exc))
        raise


def blocklist_import(
    name: str,
    result: ParseResult,
    source: str = "",
    *,
    enabled: bool | None = None,
) -> ImportSummary:
    """Create or update the Blocklist `name` so that it holds exactly `result.domains` and `result.rules`.

    Only the difference with what the database holds is written, new names
    first, then the removals, in transactions of about WRITE_SLICE seconds
    each: none holds SQLite's write lock (the query log's too) for long,
    whatever the list's size. An engine that reloads in between sees a
    list between the two: every name of both the old and the new contents,
    some names of only one of them. The last transaction stores the count and
    tells the engines to reload, only when something changed, so a daily
    refresh that changed nothing costs no rebuild. `enabled=None` keeps the
    current setting (True for a new list). Adblock @@ exceptions become
    AllowedDomain rows unless one already exists for that name.

    A regex list's patterns become BlockRule rows attached to the list (so they
    follow its `enabled`); any other list ends up with none.

    Raises BlocklistError, touching nothing, when `result` holds no domain (no
    regex, for a regex list), is mostly unreadable lines, or holds more than
    GLORYHOLE_BLOCKLIST_MAX_NAMES names: such a file must never replace a good list.
    """
    name = name.strip()
    if not name or len(name) > Blocklist._meta.get_field("name").max_length:
        raise BlocklistError(f"{name!r} is not a usable list name (1 to 100 characters)")
    _check_importable(name, result)
    started = time.monotonic()
    new_domains = result.domains
    new_sorted = sorted(new_domains)
    now = timezone.now()
    with transaction.atomic():
        blocklist, created = Blocklist.objects.get_or_create(
            name=name, defaults={"enabled": True if enabled is None else enabled}
        )
    added = removed = 0
    for _ in range(_ROUNDS):
        round_added, round_removed = store.write_difference(blocklist.pk, new_sorted)
        added += round_added
        removed += round_removed
        fields = {
            "source": source[: Blocklist._meta.get_field("source").max_length],
            "format": result.format,
            # Entries, whatever their kind: the updater reads 0 as "holds nothing yet".
            "domain_count": len(new_domains) + len(result.rules),
            "last_loaded": now,
            "last_error": "",
        }
        if enabled is not None:
            fields["enabled"] = enabled
        with transaction.atomic():
            # update() first: on SQLite it takes the write lock, so the count below
            # cannot change before this transaction ends.
            Blocklist.objects.filter(pk=blocklist.pk).update(**fields)
            if BlockedDomain.objects.filter(blocklist_id=blocklist.pk).count() != len(new_domains):
                # Another import of this list wrote at the same time: compare again.
                transaction.set_rollback(True)
                continue
            allowed_added = store.allow_exceptions(result.allowed, name)
            rules_added, rules_removed = store.replace_rules(blocklist, result.rules)
            # Raw inserts and deletes fire no signals, so the engines learn of it here;
            # a daily refresh that changed nothing must not make them rebuild a million names.
            changed = added or removed or allowed_added or rules_added or rules_removed
            if created or changed or (enabled is not None and enabled != blocklist.enabled):
                config_generation_bump()
        break
    else:
        raise BlocklistError(f'blocklist "{name}" kept changing while it was written (another import?); try again')
    summary = ImportSummary(
        name=name,
        created=created,
        domains=len(new_domains),
        added=added,
        removed=removed,
        allowed_added=allowed_added,
        format=result.format,
        lines=result.lines,
        comments=result.comments,
        ignored_modifiers=result.ignored_modifiers,
        skipped=Counter(result.skipped),
        seconds=time.monotonic() - started,
        rules=len(result.rules),
        rules_added=rules_added,
        rules_removed=rules_removed,
    )
    # Debug only: each caller reports the import once (a command's line, a web message, the updater's log line).
    logger.debug("%s in %.1f s", summary.describe(), summary.seconds)
    return summary


def _check_importable(name: str, result: ParseResult) -> None:
    """BlocklistError, before anything is written, for a result that must not replace a list."""
    kept = "; its previous contents are kept"
    if result.format == "regex" and not result.rules:
        raise BlocklistError(
            f'no valid regex for blocklist "{name}" ({result.lines:,} lines, '
            f"skipped {describe_skipped(result.skipped)}){kept}"
        )
    if result.format != "regex" and not result.domains:
        raise BlocklistError(
            f'no valid domain for blocklist "{name}" ({result.lines:,} lines, '
            f"skipped {describe_skipped(result.skipped)}){kept}"
        )
    limit = settings.GLORYHOLE_BLOCKLIST_MAX_NAMES
    if len(result.domains) + len(result.allowed) > limit:
        raise BlocklistError(
            f'blocklist "{name}" would hold {len(result.domains) + len(result.allowed):,} names, over the '
            f"{limit:,}-name limit (GLORYHOLE_BLOCKLIST_MAX_NAMES){kept}"
        )
    check_mostly_entries(result, f'the new contents of blocklist "{name}"')


def blocklist_record_error(name: str, message: str) -> bool:
    """Store why loading `name` failed, keeping its domains; False when no such list exists.

    Not logged here: the caller reports the failure once, in its own words
    (a command's error, a web message, the updater's one line per list).
    """
    updated = Blocklist.objects.filter(name=name.strip()).update(last_error=message)
    return bool(updated)


# --- Subscriptions: refreshing lists from their URL ----------------------------------

# The list shipped in the package (dnsengine/data/), loaded by migration 0003 so a
# fresh install blocks before it has downloaded anything. Refreshed from the file
# when a new release changes it.
BUNDLED_SOURCE = "bundled:bundled-blocklist.txt"
BUNDLED_PATH = Path(__file__).resolve().parent.parent / "data" / "bundled-blocklist.txt"

# After a failed download, try again this soon (never later than the usual interval):
# the first fetch of a fresh install often fails only because the network was not up yet.
RETRY_AFTER = timedelta(hours=1)
# Next updates are spread by up to this share of the interval either way, so lists (and
# installs) do not all hit their servers at the same minute every day.
JITTER = 0.05
# How long an engine may take over a due list before another may try it.
CLAIM_FOR = timedelta(hours=1)

UPDATED, UNCHANGED, FAILED, SKIPPED = "updated", "unchanged", "failed", "skipped"
# Updates kept per list in its history (BlocklistUpdate), newest first.
HISTORY_KEEP = 20


@dataclass(slots=True)
class UpdateOutcome:
    name: str
    status: str  # UPDATED | UNCHANGED | FAILED | SKIPPED
    entries: int  # domains the list holds now (the old count after a failure)
    detail: str = ""  # why it failed, was skipped or is unchanged
    summary: ImportSummary | None = None
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for a person: entries, added, removed, skipped lines, time."""
        took = f"{self.seconds:.1f} s"
        if self.status == UPDATED and self.summary is not None:
            s = self.summary
            skipped = sum(s.skipped.values())
            text = (
                f"{self.name}: updated, {s.entries:,} entries (+{s.entries_added:,} / -{s.entries_removed:,}), "
                f"{skipped:,} skipped"
            )
            if skipped:
                text += f" ({describe_skipped(s.skipped)})"
            return f"{text}, {took}"
        if self.status == UNCHANGED:
            return f"{self.name}: unchanged ({self.detail}), {self.entries:,} entries, {took}"
        if self.status == FAILED:
            return f"{self.name}: FAILED, keeps its {self.entries:,} entries: {self.detail} ({took})"
        return f"{self.name}: skipped, {self.detail}"


def blocklist_next_update(now: datetime, *, failed: bool = False) -> datetime | None:
    """When a list checked at `now` is due again; None when the engine does not schedule updates."""
    hours = settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS
    if not hours:
        return None
    interval = timedelta(hours=hours)
    if failed:
        interval = min(interval, RETRY_AFTER)
    return now + interval * random.uniform(1 - JITTER, 1 + JITTER)


def blocklist_is_updatable(blocklist: Blocklist) -> bool:
    return bool(blocklist.url) or blocklist.source == BUNDLED_SOURCE


def blocklist_update(
    blocklist: Blocklist, *, force: bool = False, on_progress: Progress | None = None
) -> UpdateOutcome:
    """Refresh one list from its URL (or the bundled file); never raises for a bad download.

    A conditional request first (unless `force`): a 304 costs one round trip and
    no write. Any failure (network, HTTP, size, HTML, nothing usable in it, mostly
    unreadable, too many names) keeps the list as it is and stores the reason in
    last_error, for the web page. Every attempt is added to the list's update
    history (the last HISTORY_KEEP). Not logged here: blocklists_update logs one
    line per list.
    """
    outcome = _blocklist_update(blocklist, force=force, on_progress=on_progress)
    if outcome.status != SKIPPED:
        blocklist_history_add(blocklist.pk, outcome)
    return outcome


def blocklist_history_add(blocklist_id: int, outcome: UpdateOutcome) -> None:
    """Record one update in the list's history and drop all but its last HISTORY_KEEP."""
    summary = outcome.summary
    with transaction.atomic():
        if not Blocklist.objects.filter(pk=blocklist_id).exists():
            return  # deleted while it was being fetched
        BlocklistUpdate.objects.create(
            blocklist_id=blocklist_id,
            status=outcome.status,
            entries=outcome.entries,
            added=summary.entries_added if summary else 0,
            removed=summary.entries_removed if summary else 0,
            seconds=outcome.seconds,
            error=outcome.detail if outcome.status == FAILED else "",
        )
        keep = BlocklistUpdate.objects.filter(blocklist_id=blocklist_id).values_list("pk", flat=True)[:HISTORY_KEEP]
        BlocklistUpdate.objects.filter(blocklist_id=blocklist_id).exclude(pk__in=list(keep)).delete()


def _blocklist_update(blocklist: Blocklist, *, force: bool, on_progress: Progress | None) -> UpdateOutcome:
    started = time.monotonic()
    now = timezone.now()
    name = blocklist.name
    if not blocklist_is_updatable(blocklist):
        return UpdateOutcome(name, SKIPPED, blocklist.domain_count, "no URL to update from")
    try:
        with tempfile.TemporaryFile(prefix="gloryhole-list-") as body:
            if blocklist.url:
                fetched = fetch_blocklist(
                    blocklist.url,
                    body,
                    # Validators only for contents we hold: a 304 for an empty list would keep it empty.
                    etag="" if force or not blocklist.domain_count else blocklist.etag,
                    last_modified="" if force or not blocklist.domain_count else blocklist.last_modified,
                    max_bytes=settings.GLORYHOLE_BLOCKLIST_MAX_BYTES,
                    timeout=settings.GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT,
                    max_seconds=settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS,
                    max_redirects=settings.GLORYHOLE_BLOCKLIST_MAX_REDIRECTS,
                    on_progress=on_progress,
                )
                source, etag, last_modified = fetched.url, fetched.etag, fetched.last_modified
                unchanged = "HTTP 304 not modified" if fetched.not_modified else ""
            else:
                etag = _copy_bundled(body)
                source, last_modified = BUNDLED_SOURCE, ""
                unchanged = "same file" if etag == blocklist.etag and blocklist.domain_count and not force else ""
            if unchanged:
                _record_check(blocklist, now, failed=False)
                return UpdateOutcome(
                    name, UNCHANGED, blocklist.domain_count, unchanged, None, time.monotonic() - started
                )
            body.seek(0)
            # The Adblock parser also reads hosts and plain lines; any other list is
            # re-detected each time, since publishers do change formats. A regex
            # list is never detected, so it stays one.
            fmt = blocklist.format if blocklist.format in (Blocklist.Format.ADBLOCK, Blocklist.Format.REGEX) else "auto"
            # Named by its URL, so the one line that reports a refusal says which download it was.
            result = blocklist_read(body, fmt, display=source)
        summary = blocklist_import(name, result, source=source)
    except BlocklistError as exc:
        # FetchError included: the message is already written for a person, and
        # names the URL; the few that cannot (a bad list name) get it in front.
        detail = str(exc)
        if blocklist.url and blocklist.url not in detail and "://" not in detail:
            detail = f"{blocklist.url}: {detail}"
        blocklist_record_error(name, detail)
        _record_check(blocklist, now, failed=True)
        return UpdateOutcome(name, FAILED, blocklist.domain_count, detail, None, time.monotonic() - started)
    Blocklist.objects.filter(pk=blocklist.pk).update(
        etag=etag[:500],
        last_modified=last_modified[:100],
        last_checked=now,
        next_update=blocklist_next_update(now),
    )
    return UpdateOutcome(name, UPDATED, summary.entries, "", summary, time.monotonic() - started)


def blocklists_update(
    names: list[str] | None = None,
    *,
    force: bool = False,
    due_only: bool = False,
    progress_for: Callable[[Blocklist], Progress | None] | None = None,
    on_outcome: Callable[[UpdateOutcome], None] | None = None,
) -> list[UpdateOutcome]:
    """Refresh several lists, one after the other; a failing one does not stop the rest.

    names: those lists (enabled or not); None: every enabled list that has a URL
    (or is the bundled one). due_only: only those whose next_update has come,
    each claimed first so two engines on one database do not both fetch it.
    on_outcome is called after each list (unknown names come only in the result);
    without it, each list's outcome is logged instead, in one line.
    """
    if names:
        found = {b.name: b for b in Blocklist.objects.filter(name__in=names)}
        outcomes = [UpdateOutcome(n, SKIPPED, 0, "no such list") for n in names if n not in found]
        if on_outcome is None:
            for outcome in outcomes:
                logger.warning("blocklist update: %s", outcome.describe())
        lists = [found[n] for n in dict.fromkeys(names) if n in found]
    else:
        outcomes = []
        lists = [b for b in Blocklist.objects.filter(enabled=True).order_by("name") if blocklist_is_updatable(b)]
    for blocklist in lists:
        if due_only and not _claim(blocklist):
            continue
        progress = progress_for(blocklist) if progress_for is not None else None
        outcome = blocklist_update(blocklist, force=force, on_progress=progress)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        else:
            # The one log line for this list; for a failure it holds the URL and the reason.
            level = logging.WARNING if outcome.status == FAILED else logging.INFO
            logger.log(level, "blocklist update: %s", outcome.describe())
    return outcomes


def _claim(blocklist: Blocklist) -> bool:
    """Take a due list for this process: True if it is due and nobody took it first."""
    now = timezone.now()
    if blocklist.next_update is not None and blocklist.next_update > now:
        return False
    claimed = Blocklist.objects.filter(pk=blocklist.pk, next_update=blocklist.next_update).update(
        next_update=now + CLAIM_FOR
    )
    # Nothing got updated: another engine got there first.
    return bool(claimed)


def _record_check(blocklist: Blocklist, now: datetime, *, failed: bool) -> None:
    fields = {"last_checked": now, "next_update": blocklist_next_update(now, failed=failed)}
    if not failed:
        fields["last_error"] = ""
    Blocklist.objects.filter(pk=blocklist.pk).update(**fields)


def _copy_bundled(dest) -> str:
    """Copy the bundled list into `dest`; its "sha256:..." stands in for an ETag."""
    digest = hashlib.sha256()
    try:
        with open(BUNDLED_PATH, "rb") as fp:
            while chunk := fp.read(1 << 16):
                digest.update(chunk)
                dest.write(chunk)
    except OSError as exc:
        raise BlocklistError(f"cannot read the bundled list {BUNDLED_PATH}: {exc.strerror or exc}") from exc
    return f"sha256:{digest.hexdigest()}"
