"""Writing a blocklist's rows: its names as the difference with what the database holds, its
regex rules, the allowlist entries of its @@ exceptions.

In SQL, not through the ORM's save() and delete(): signals.py bumps the config
generation once per saved or deleted row, where an import bumps it once in all
(importer.blocklist_import).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial

from django.db import IntegrityError, connection, transaction
from django.db.models.constants import OnConflict

from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, BlockRule

BATCH_SIZE = 5000
# Names per DELETE ... IN (...): well under SQLite's bound-parameter limit.
_DELETE_CHUNK = 500
# Rows per fetchmany() while reading a list's names back.
_FETCH_ROWS = 20000
# SQLite has one write lock for the whole database, shared with the query log's
# writers: an import writes its rows in transactions that each end once they have
# held it this long (plus one batch), never for the whole list.
WRITE_SLICE = 0.1
# On SQLite, the pause after each transaction, as a share of the time it held the
# lock: a writer of another process waiting in SQLite's busy handler polls every few
# to 100 ms, and must find the lock free when it looks.
_YIELD_SHARE = 1.0
_YIELD_MAX = 0.1


def blocklist_names(blocklist_id: int, *, ordered: bool = False) -> Iterator[str]:
    """Stream the names a list holds now with a plain cursor (no write lock, no set of them all).

    A million rows through values_list().iterator() cost seconds of ORM
    machinery; a reload and an import only need the strings, once. `ordered`:
    in code-point order, which SQLite gives comparing text as UTF-8 bytes and
    PostgreSQL's "C" collation, where the database's own may not.
    """
    quote = connection.ops.quote_name
    meta = BlockedDomain._meta
    column = quote(meta.get_field("domain").column)
    sql = f"SELECT {column} FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('blocklist').column)} = %s"
    if ordered:
        sql += f" ORDER BY {column}" + (' COLLATE "C"' if connection.vendor == "postgresql" else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, [blocklist_id])
        while rows := cursor.fetchmany(_FETCH_ROWS):
            for (domain,) in rows:
                yield domain


def _difference(old: Iterable[str], new: list[str]) -> tuple[list[str], list[str]]:
    """(added, removed), both sorted, from two ascending sequences without duplicates, in one pass."""
    added: list[str] = []
    removed: list[str] = []
    new_names = iter(new)
    pending = next(new_names, None)
    for name in old:
        while pending is not None and pending < name:
            added.append(pending)
            pending = next(new_names, None)
        if pending == name:
            pending = next(new_names, None)
        else:
            removed.append(name)
    if pending is not None:
        added.append(pending)
        added.extend(new_names)
    return added, removed


def write_difference(blocklist_id: int, new_sorted: list[str]) -> tuple[int, int]:
    """Make the list's rows `new_sorted`: insert what is missing, then delete what is gone; (added, removed).

    In sorted order: the unique (list, domain) index then changes page after
    page instead of at random pages (1M inserts on SQLite: 14 s unsorted, 6 s sorted).
    """
    added, removed = _difference(blocklist_names(blocklist_id, ordered=True), new_sorted)
    _write_in_slices(_insert_batches(blocklist_id, added))
    _write_in_slices(_delete_batches(blocklist_id, removed))
    return len(added), len(removed)


def _write_in_slices(batches: Iterator[Callable[[], None]]) -> None:
    """Run write batches in transactions that each end after WRITE_SLICE seconds; on SQLite, pause between them."""
    batch = next(batches, None)
    while batch is not None:
        started = time.monotonic()
        try:
            with transaction.atomic():
                while batch is not None:
                    batch()
                    batch = next(batches, None)
                    if time.monotonic() - started >= WRITE_SLICE:
                        break
        except IntegrityError:
            # PostgreSQL's COPY met a name that another import of this list inserted
            # meanwhile: this slice is undone, and the count check at the end compares again.
            batch = next(batches, None)
        if connection.vendor == "sqlite":
            time.sleep(min(_YIELD_MAX, (time.monotonic() - started) * _YIELD_SHARE))


def _delete_batches(blocklist_id: int, domains: list[str]) -> Iterator[Callable[[], None]]:
    """Deletes in SQL, not through QuerySet.delete().

    signals.py listens to post_delete for BlockedDomain, which makes Django
    fetch every row and send one signal (one generation bump) per row: hours
    for a million-row list.
    """
    quote = connection.ops.quote_name
    meta = BlockedDomain._meta
    table = quote(meta.db_table)
    list_column = quote(meta.get_field("blocklist").column)
    domain_column = quote(meta.get_field("domain").column)
    for start in range(0, len(domains), _DELETE_CHUNK):
        chunk = domains[start : start + _DELETE_CHUNK]
        sql = f"DELETE FROM {table} WHERE {list_column} = %s AND {domain_column} IN ({', '.join(['%s'] * len(chunk))})"
        yield partial(_execute, sql, [blocklist_id, *chunk])


def _execute(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _insert_batches(blocklist_id: int, domains: list[str]) -> Iterator[Callable[[], None]]:
    """Inserts with executemany, or COPY on PostgreSQL, BATCH_SIZE rows each.

    Not bulk_create: it builds a model instance per name and SQLite's parameter
    limit cuts its batches short (docs/querylog.md compares the two for log rows).
    A name that another import of the list inserted meanwhile is left alone
    (SQLite: INSERT OR IGNORE; PostgreSQL: the slice fails and the import
    compares again).
    """
    quote = connection.ops.quote_name
    meta = BlockedDomain._meta
    columns = f"{quote(meta.get_field('blocklist').column)}, {quote(meta.get_field('domain').column)}"
    target = f"{quote(meta.db_table)} ({columns})"
    insert = _copy_rows if connection.vendor == "postgresql" else _insert_rows
    for start in range(0, len(domains), BATCH_SIZE):
        yield partial(insert, target, [(blocklist_id, d) for d in domains[start : start + BATCH_SIZE]])


def _insert_rows(target: str, rows: list[tuple[int, str]]) -> None:
    insert = connection.ops.insert_statement(on_conflict=OnConflict.IGNORE)
    with connection.cursor() as cursor:
        cursor.executemany(f"{insert} {target} VALUES (%s, %s)", rows)


def _copy_rows(target: str, rows: list[tuple[int, str]]) -> None:
    # COPY: Django's psycopg cursor binds parameters on the client and executemany
    # sends one statement per row, a round trip each. SQLite has no COPY.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {target} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def replace_rules(blocklist: Blocklist, patterns: list[str]) -> tuple[int, int]:
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


def allow_exceptions(domains: list[str], list_name: str) -> int:
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
