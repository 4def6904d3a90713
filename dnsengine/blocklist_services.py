"""Writes for blocklists: load a parsed list into the database, record a failed load,
refresh subscriptions from their URL.

Shared by `manage.py importblocklist`, the web upload, `manage.py updateblocklists`
and the engine's scheduled updater (dnsengine.updater).
"""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from dnsengine.blocklist import BlocklistError, ParseResult, describe_skipped, iter_binary_lines, parse_blocklist
from dnsengine.fetch import Progress, fetch_blocklist
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, BlockRule
from dnsengine.services import config_generation_bump

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000
# Names per DELETE ... IN (...): well under SQLite's bound-parameter limit.
_DELETE_CHUNK = 500


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


def blocklist_import(
    name: str,
    result: ParseResult,
    source: str = "",
    *,
    enabled: bool | None = None,
) -> ImportSummary:
    """Create or update the Blocklist `name` so that it holds exactly `result.domains` and `result.rules`.

    One transaction: engines see the old list or the new one, never a mix. Only
    the difference is written, so refreshing a mostly unchanged list keeps the
    write lock (on SQLite: the whole database) short, and the engines are told
    to reload only when something changed. `enabled=None` keeps the current
    setting (True for a new list). Adblock @@ exceptions become AllowedDomain
    rows unless one already exists for that name.

    A regex list's patterns become BlockRule rows attached to the list (so they
    follow its `enabled`); any other list ends up with none.

    Raises BlocklistError, touching nothing, when `result` holds no domain (no
    regex, for a regex list): an empty download must never replace a good list.
    """
    name = name.strip()
    if not name or len(name) > Blocklist._meta.get_field("name").max_length:
        raise BlocklistError(f"{name!r} is not a usable list name (1 to 100 characters)")
    if result.format == "regex" and not result.rules:
        raise BlocklistError(
            f'no valid regex for blocklist "{name}" ({result.lines:,} lines, '
            f"skipped {describe_skipped(result.skipped)}); its previous contents are kept"
        )
    if result.format != "regex" and not result.domains:
        raise BlocklistError(
            f'no valid domain for blocklist "{name}" ({result.lines:,} lines, '
            f"skipped {describe_skipped(result.skipped)}); its previous contents are kept"
        )
    started = time.monotonic()
    new_domains = result.domains
    new_set = set(new_domains)
    now = timezone.now()
    with transaction.atomic():
        # select_for_update serialises two imports of one list on PostgreSQL;
        # on SQLite the IMMEDIATE transaction already does.
        blocklist, created = Blocklist.objects.select_for_update().get_or_create(
            name=name, defaults={"enabled": True if enabled is None else enabled}
        )
        old = set(
            BlockedDomain.objects.filter(blocklist=blocklist)
            .values_list("domain", flat=True)
            .iterator(chunk_size=10000)
        )
        removed = [d for d in old if d not in new_set]
        _delete_domains(blocklist.pk, removed, everything=len(removed) == len(old))
        added = [d for d in new_domains if d not in old]
        del old, new_set
        _insert_domains(blocklist.pk, added)
        allowed_added = _allow_exceptions(result.allowed, name)
        rules_added, rules_removed = _replace_rules(blocklist, result.rules)
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
        # update(), not save(): one explicit bump below instead of one per signal.
        Blocklist.objects.filter(pk=blocklist.pk).update(**fields)
        # Raw inserts and deletes fire no signals, so the engines learn of it here;
        # a daily refresh that changed nothing must not make them rebuild a million names.
        changed = added or removed or allowed_added or rules_added or rules_removed
        if created or changed or (enabled is not None and enabled != blocklist.enabled):
            config_generation_bump()
    summary = ImportSummary(
        name=name,
        created=created,
        domains=len(new_domains),
        added=len(added),
        removed=len(removed),
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
    logger.info("%s in %.1f s", summary.describe(), summary.seconds)
    return summary


def blocklist_record_error(name: str, message: str) -> bool:
    """Store why loading `name` failed, keeping its domains; False when no such list exists."""
    updated = Blocklist.objects.filter(name=name.strip()).update(last_error=message)
    logger.warning("blocklist %r not loaded: %s", name, message)
    return bool(updated)


def _delete_domains(blocklist_id: int, domains: list[str], *, everything: bool) -> None:
    """Delete rows in SQL, not through QuerySet.delete().

    signals.py listens to post_delete for BlockedDomain, which makes Django
    fetch every row and send one signal (one generation bump) per row: hours
    for a million-row list.
    """
    if not domains:
        return
    quote = connection.ops.quote_name
    meta = BlockedDomain._meta
    table = quote(meta.db_table)
    list_column = quote(meta.get_field("blocklist").column)
    domain_column = quote(meta.get_field("domain").column)
    with connection.cursor() as cursor:
        if everything:
            cursor.execute(f"DELETE FROM {table} WHERE {list_column} = %s", [blocklist_id])
            return
        for start in range(0, len(domains), _DELETE_CHUNK):
            chunk = domains[start : start + _DELETE_CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"DELETE FROM {table} WHERE {list_column} = %s AND {domain_column} IN ({marks})",
                [blocklist_id, *chunk],
            )


def _insert_domains(blocklist_id: int, domains: list[str]) -> None:
    """Insert rows with executemany, in sorted order.

    Measured on SQLite for 1M names: bulk_create took 41-45 s (model instances,
    and batches cut to 499 rows by SQLite's parameter limit), executemany 14 s,
    and 6 s once sorted, since the unique (list, domain) index then grows at
    its end instead of at random pages. The whole import holds the write lock,
    so this is time the engine's query log waits.
    """
    if not domains:
        return
    quote = connection.ops.quote_name
    meta = BlockedDomain._meta
    columns = f"{quote(meta.get_field('blocklist').column)}, {quote(meta.get_field('domain').column)}"
    target = f"{quote(meta.db_table)} ({columns})"
    sql = f"INSERT INTO {target} VALUES (%s, %s)"
    ordered = sorted(domains)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: Django's psycopg cursor binds parameters on the client and executemany
            # sends one statement per row; 200k new names took 11.2 s that way against
            # 1.0 s on SQLite. SQLite has no COPY.
            with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {target} FROM STDIN") as copy:
                for domain in ordered:
                    copy.write_row((blocklist_id, domain))
            return
        for start in range(0, len(ordered), BATCH_SIZE):
            cursor.executemany(sql, [(blocklist_id, d) for d in ordered[start : start + BATCH_SIZE]])


def _replace_rules(blocklist: Blocklist, patterns: list[str]) -> tuple[int, int]:
    """Make the list's regex rules exactly `patterns`; (added, removed).

    In SQL and bulk_create, not save()/delete(): signals.py would bump the
    generation once per row, where the caller bumps once for the whole import.
    """
    old = dict(BlockRule.objects.filter(blocklist=blocklist).values_list("pattern", "pk"))
    wanted = set(patterns)
    gone = [pk for pattern, pk in old.items() if pattern not in wanted]
    if gone:
        quote = connection.ops.quote_name
        table, pk_column = quote(BlockRule._meta.db_table), quote(BlockRule._meta.pk.column)
        with connection.cursor() as cursor:
            for start in range(0, len(gone), _DELETE_CHUNK):
                chunk = gone[start : start + _DELETE_CHUNK]
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"DELETE FROM {table} WHERE {pk_column} IN ({marks})", chunk)
    new = [
        BlockRule(
            kind=BlockRule.Kind.REGEX,
            pattern=p,
            blocklist=blocklist,
            comment=f"from list {blocklist.name}"[: BlockRule._meta.get_field("comment").max_length],
        )
        for p in patterns
        if p not in old
    ]
    BlockRule.objects.bulk_create(new, batch_size=BATCH_SIZE)
    return len(new), len(gone)


def _allow_exceptions(domains: list[str], list_name: str) -> int:
    """Create AllowedDomain rows for the list's @@ exceptions that have none yet; how many were created.

    An existing row is left alone, even a disabled one: someone disabled it on purpose.
    """
    if not domains:
        return 0
    present: set[str] = set()
    for start in range(0, len(domains), _DELETE_CHUNK):
        chunk = domains[start : start + _DELETE_CHUNK]
        present.update(AllowedDomain.objects.filter(domain__in=chunk).values_list("domain", flat=True))
    missing = [d for d in domains if d not in present]
    AllowedDomain.objects.bulk_create(
        [AllowedDomain(domain=d, include_subdomains=True, comment=f"from list {list_name}") for d in missing],
        batch_size=BATCH_SIZE,
        ignore_conflicts=True,
    )
    return len(missing)


# --- Subscriptions: refreshing lists from their URL ----------------------------------

# The list shipped in the package (dnsengine/data/), loaded by migration 0003 so a
# fresh install blocks before it has downloaded anything. Refreshed from the file
# when a new release changes it.
BUNDLED_SOURCE = "bundled:bundled-blocklist.txt"
BUNDLED_PATH = Path(__file__).resolve().parent / "data" / "bundled-blocklist.txt"

# After a failed download, try again this soon (never later than the usual interval):
# the first fetch of a fresh install often fails only because the network was not up yet.
RETRY_AFTER = timedelta(hours=1)
# Next updates are spread by up to this share of the interval either way, so lists (and
# installs) do not all hit their servers at the same minute every day.
JITTER = 0.05
# How long an engine may take over a due list before another may try it.
CLAIM_FOR = timedelta(hours=1)

UPDATED, UNCHANGED, FAILED, SKIPPED = "updated", "unchanged", "failed", "skipped"


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
    no write. Any failure (network, HTTP, size, HTML, nothing usable in it) keeps
    the list as it is and stores the reason in last_error, for the web page.
    """
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
            result = parse_blocklist(iter_binary_lines(body), fmt)
        summary = blocklist_import(name, result, source=source)
    except BlocklistError as exc:
        # FetchError included: the message is already written for a person.
        blocklist_record_error(name, str(exc))
        _record_check(blocklist, now, failed=True)
        return UpdateOutcome(name, FAILED, blocklist.domain_count, str(exc), None, time.monotonic() - started)
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
    on_outcome is called after each list (unknown names come only in the result).
    """
    if names:
        found = {b.name: b for b in Blocklist.objects.filter(name__in=names)}
        outcomes = [UpdateOutcome(n, SKIPPED, 0, "no such list") for n in names if n not in found]
        lists = [found[n] for n in dict.fromkeys(names) if n in found]
    else:
        outcomes = []
        lists = [b for b in Blocklist.objects.filter(enabled=True).order_by("name") if blocklist_is_updatable(b)]
    for blocklist in lists:
        if due_only and not _claim(blocklist):
            continue
        progress = progress_for(blocklist) if progress_for is not None else None
        outcome = blocklist_update(blocklist, force=force, on_progress=progress)
        logger.log(logging.WARNING if outcome.status == FAILED else logging.INFO, "%s", outcome.describe())
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
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
