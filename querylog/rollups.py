"""Per-minute / per-hour counts the dashboard reads instead of scanning QueryLog.

The query logger's writer (``querylog.logger.writer``) calls these for every batch,
inside the batch's transaction, so the rollups always agree with the rows: aggregation
happens in Python (a batch of 2000 entries becomes a few dozen to a few hundred rows), then
one upsert per table adds the counts:

    INSERT ... ON CONFLICT (key) DO UPDATE SET count = <table>.count + excluded.count

which SQLite (>= 3.24) and PostgreSQL both accept. On PostgreSQL the rows go in
as one array per column (``INSERT ... SELECT * FROM unnest(...)``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q

from dnsengine.core.entry import QueryLogEntry
from querylog.db import execute_values, sqlite_write_lock, without_nul
from querylog.models import AnswerRollup, ClientRollup, DomainRollup, QueryLog, QueryRollup, RollupSummary

# The dashboard stores a summary of an hour or day once it is this far past
# (querylog.selectors). A batch that still adds to such a period deletes its
# summaries in the same transaction, so they are rebuilt with the late rows.
SUMMARY_AFTER = timedelta(hours=1)

# datetime.fromtimestamp rounds to the microsecond: an entry less than half a
# microsecond before a second boundary is stored in the next second, so its bucket
# must be the next one too.
_ROUND_UP = 0.9999995


@dataclass(slots=True)
class RollupRows:
    """One batch aggregated; buckets are epoch seconds (UTC minute or hour start)."""

    minutes: dict[tuple[int, str], int]  # (minute, status) -> count
    domains: dict[tuple[int, str, str], int]  # (hour, domain, status) -> count
    clients: dict[tuple[int, str], int]  # (hour, client) -> count
    # (hour, client) -> blocked count, only for keys with a blocked query; others are 0.
    clients_blocked: dict[tuple[int, str], int] = field(default_factory=dict)
    # (hour, qtype, upstream, time bucket) -> count; upstream "" and bucket 0 when no upstream answered.
    answers: dict[tuple[int, str, str, int], int] = field(default_factory=dict)


def time_bucket(duration_us: int) -> int:
    """The answer-time bucket of a duration: 1 below 2 µs, then two buckets per doubling.

    Bucket k >= 2 starts at 2**(k // 2) µs, or 1.5 times that for odd k (see
    time_bucket_bounds). The writer inlines this arithmetic; this is the reference.
    """
    if duration_us < 2:
        return 1
    bits = duration_us.bit_length()
    return 2 * bits - 2 + ((duration_us >> (bits - 2)) & 1)


def time_bucket_bounds(bucket: int) -> tuple[int, int]:
    """[low, high) in microseconds of a bucket time_bucket returns."""

    def low(k: int) -> int:
        if k <= 1:
            return 0
        base = 1 << (k // 2)
        return base + base // 2 if k % 2 else base

    return low(bucket), low(bucket + 1)


def rollup_rows(
    entries: Sequence[QueryLogEntry], *, with_domains: bool = True, with_clients: bool = True
) -> RollupRows:
    """Aggregate a batch in Python (no database access).

    ``with_domains``/``with_clients`` False (privacy levels 1 and 2): those rollups get
    nothing from this batch, only the per-minute totals do.
    """
    if not (with_domains and with_clients):
        return _rollup_rows_private(entries, with_clients)
    minutes: dict[tuple[int, str], int] = {}
    domains: dict[tuple[int, str, str], int] = {}
    clients: dict[tuple[int, str], int] = {}
    blocked: dict[tuple[int, str], int] = {}
    answers: dict[tuple[int, str, str, int], int] = {}
    mget, dget, cget, aget = minutes.get, domains.get, clients.get, answers.get
    blocked_status = QueryLog.Status.BLOCKED.value
    ld = DomainRollup._meta.get_field("domain").max_length
    ls = QueryRollup._meta.get_field("status").max_length
    normalize = _normalizer
    for e in entries:
        ts = e.timestamp
        s = int(ts)
        if ts - s >= _ROUND_UP:
            s += 1
        minute = s - s % 60
        hour = s - s % 3600
        status = e.status[:ls]
        key = (minute, status)
        minutes[key] = mget(key, 0) + 1
        dkey = (hour, e.domain[:ld], status)
        domains[dkey] = dget(dkey, 0) + 1
        ckey = (hour, normalize[e.client])
        clients[ckey] = cget(ckey, 0) + 1
        if status == blocked_status:
            blocked[ckey] = blocked.get(ckey, 0) + 1
        upstream = e.upstream
        if upstream:
            # time_bucket(), inlined: this loop runs for every logged query.
            us = e.duration_us
            if us < 2:
                tb = 1
            else:
                bits = us.bit_length()
                tb = 2 * bits - 2 + ((us >> (bits - 2)) & 1)
            akey = (hour, e.qtype, upstream, tb)
        else:
            akey = (hour, e.qtype, "", 0)
        answers[akey] = aget(akey, 0) + 1
    return RollupRows(minutes, domains, clients, blocked, answers)


def _rollup_rows_private(entries: Sequence[QueryLogEntry], with_clients: bool) -> RollupRows:
    full = rollup_rows(entries)
    # Query types and upstreams name neither a domain nor a client: kept at every level that keeps rows.
    if with_clients:
        return RollupRows(full.minutes, {}, full.clients, full.clients_blocked, full.answers)
    return RollupRows(full.minutes, {}, {}, {}, full.answers)


class _ClientNormalizer(dict):
    """client -> the text QueryLog stores for it (IPv6 normalised), cut to ClientRollup's length."""

    def __missing__(self, client: str) -> str:
        if len(self) > 10000:
            self.clear()
        value = QueryLog._meta.get_field("client").get_prep_value(client) or ""
        value = self[client] = value[: ClientRollup._meta.get_field("client").max_length]
        return value


_normalizer = _ClientNormalizer()


def _upsert_parts(
    connection, model, key_fields: Sequence[str], count_fields: Sequence[str] = ("count",)
) -> tuple[str, str, int]:
    """(INSERT head, ON CONFLICT tail, columns) of the upsert for one rollup model; each count field is added."""
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    keys = [qn(model._meta.get_field(name).column) for name in key_fields]
    counts = [qn(model._meta.get_field(name).column) for name in count_fields]
    head = f"INSERT INTO {table} ({', '.join(keys + counts)})"
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counts)
    tail = f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"
    return head, tail, len(keys) + len(counts)


def rollup_write(rows: RollupRows, using: str = DEFAULT_DB_ALIAS, *, reuse_sqlite_statements: bool = True) -> None:
    """Add aggregated counts to the rollup tables. Call inside the batch's transaction.

    ``reuse_sqlite_statements``: as ``querylog.db.execute_values`` takes it.
    """
    connection = connections[using]
    field = QueryRollup._meta.get_field("bucket")
    buckets: dict[int, object] = {}

    def bucket(seconds: int) -> object:
        value = buckets.get(seconds)
        if value is None:
            value = buckets[seconds] = field.get_db_prep_save(datetime.fromtimestamp(seconds, UTC), connection)
        return value

    # One multi-row upsert per table (a batch never repeats a key, which PostgreSQL
    # requires of one statement). Sorted keys: concurrent writers on PostgreSQL
    # then lock rows in the same order and cannot deadlock on each other.
    blocked = rows.clients_blocked
    for model, keys, counts, values in (
        (
            QueryRollup,
            ("bucket", "status"),
            ("count",),
            [(bucket(m), s, n) for (m, s), n in sorted(rows.minutes.items())],
        ),
        (
            DomainRollup,
            ("bucket", "domain", "status"),
            ("count",),
            [(bucket(h), d, s, n) for (h, d, s), n in sorted(rows.domains.items())],
        ),
        (
            ClientRollup,
            ("bucket", "client"),
            ("count", "blocked"),
            [(bucket(h), c, n, blocked.get((h, c), 0)) for (h, c), n in sorted(rows.clients.items())],
        ),
        (
            AnswerRollup,
            ("bucket", "qtype", "upstream", "time_bucket"),
            ("count",),
            [(bucket(h), q, u, t, n) for (h, q, u, t), n in sorted(_answers_fitted(rows.answers).items())],
        ),
    ):
        if not values:
            continue
        head, tail, width = _upsert_parts(connection, model, keys, counts)
        if connection.vendor == "postgresql":
            # One array per column instead of one parameter per value: Django's psycopg
            # cursor binds parameters on the client one at a time, which made the rollups
            # most of a batch's cost on PostgreSQL (figures: docs/scale-out.md).
            execute_unnest(connection, head, model, (*keys, *counts), values, tail)
        else:
            execute_values(connection, head, width, values, tail, reuse_sqlite_statements=reuse_sqlite_statements)
    _forget_stale_summaries(rows, using)


_QTYPE_MAX = AnswerRollup._meta.get_field("qtype").max_length
_UPSTREAM_MAX = AnswerRollup._meta.get_field("upstream").max_length


def _answers_fitted(answers: dict[tuple[int, str, str, int], int]) -> dict[tuple[int, str, str, int], int]:
    """The answer counts with qtype and upstream cut to their columns (keys that become equal are added).

    Done here, per key, rather than per entry in rollup_rows: a batch has a few dozen keys.
    """
    if all(len(q) <= _QTYPE_MAX and len(u) <= _UPSTREAM_MAX for _, q, u, _ in answers):
        return answers
    fitted: dict[tuple[int, str, str, int], int] = {}
    for (h, q, u, t), n in answers.items():
        key = (h, q[:_QTYPE_MAX], u[:_UPSTREAM_MAX], t)
        fitted[key] = fitted.get(key, 0) + n
    return fitted


def _forget_stale_summaries(rows: RollupRows, using: str) -> None:
    """Delete stored summaries of the hours (and their days) this batch adds to, if any is already stored.

    Only late rows (after an outage, a backlog) reach a period that old: normally
    this is one comparison per batch.
    """
    final_before = time.time() - SUMMARY_AFTER.total_seconds() - 3600  # hours starting before this are final
    # The minute keys: a dozen or so per batch (a minute or two times the statuses).
    late = {hour for hour in {m - m % 3600 for m, _ in rows.minutes} if hour < final_before}
    if not late:
        return
    hours = [datetime.fromtimestamp(h, UTC) for h in sorted(late)]
    days = sorted({h.replace(hour=0) for h in hours})
    stale = RollupSummary.objects.using(using).filter(Q(hours=1, start__in=hours) | Q(hours=24, start__in=days))
    # only("id"): a post_delete receiver (dnsengine.signals) makes Django fetch the rows first.
    stale.only("id").delete()


def execute_unnest(connection, head: str, model, fields: Sequence[str], rows: Sequence[tuple], tail: str) -> None:
    """``{head} SELECT * FROM unnest(%s::type[], ...){tail}`` with one array per column (PostgreSQL)."""
    if any("\x00" in v for row in rows for v in row if isinstance(v, str)):
        rows = _merged_without_nul(rows)
    types = [model._meta.get_field(name).db_type(connection) for name in fields]
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    columns = [list(column) for column in zip(*rows, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(f"{head} SELECT * FROM unnest({arrays}){tail}", columns)


def rollup_minutes_write(minutes: dict[tuple[int, str], int], using: str = DEFAULT_DB_ALIAS) -> None:
    """Add per-minute counts ((minute, status) -> n) in their own transaction (privacy level 3)."""
    with sqlite_write_lock(using) or nullcontext(), transaction.atomic(using=using):
        rollup_write(RollupRows(dict(minutes), {}, {}), using=using)


def rollup_apply(entries: Sequence[QueryLogEntry], using: str = DEFAULT_DB_ALIAS) -> None:
    """Aggregate a batch and upsert it into the rollups, in the caller's transaction if any."""
    rows = rollup_rows(entries)
    with transaction.atomic(using=using):
        rollup_write(rows, using=using)


def _merged_without_nul(rows: Sequence[tuple]) -> list[tuple]:
    """Rows (key..., count) with NUL written as the logger's row builder writes it, counts of equal keys added.

    A query name may hold a NUL byte, which PostgreSQL text cannot. Once rewritten, two
    names of one batch can become one key, and PostgreSQL refuses an upsert that meets
    the same row twice; merging keeps the batch a single statement. Sorted again for the
    lock order (see rollup_write).
    """
    merged: dict[tuple, int] = {}
    for *key, count in rows:
        clean = tuple(without_nul(k) if isinstance(k, str) else k for k in key)
        merged[clean] = merged.get(clean, 0) + count
    return [(*key, count) for key, count in sorted(merged.items())]
