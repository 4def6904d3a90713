"""querylog.logger.writer: QueryLogWriter's write methods and the statements it sends."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection

from dnsengine.runtime.memory import read_memory
from gloryhole_site.testing.querylog import make_entries, make_entry
from querylog.logger.writer import WRITE_METHODS, QueryLogWriter
from querylog.models import QueryLog

SQLITE_ONLY = "SQLite-only: the PostgreSQL run has its own test for this, next to this one"
POSTGRES_ONLY = "PostgreSQL-only: the SQLite run has its own test for this, next to this one"


@pytest.mark.django_db(transaction=True)
def test_the_fast_insert_stores_exactly_what_bulk_create_stores():
    at = 1_700_000_000.0
    entries = [
        make_entry(0, at=at),
        make_entry(1, at=at + 0.9999997),  # rounds up into the next second
        make_entry(2, at=at + 59.25, client="2001:DB8:0:0::1"),  # IPv6 text normalised by the field
        make_entry(3, at=at + 61, client="::ffff:192.0.2.9", rule="r" * 300, upstream="u" * 100),
        make_entry(4, at=at + 0.5, duration_us=-5, domain="d" * 1100),
        make_entry(5, at=at + 1.000001, duration_us=2**40),
    ]
    fast_methods = [
        m for m in WRITE_METHODS if m != "bulk_create" and (m != "copy" or connection.vendor == "postgresql")
    ]
    for method in ["bulk_create", *fast_methods]:
        QueryLogWriter(method, rollups=False, method=method)(entries)

    fields = [f.name for f in QueryLog._meta.concrete_fields if f.name not in ("id", "engine")]
    orm = list(QueryLog.objects.filter(engine="bulk_create").order_by("id").values_list(*fields))
    fast = list(QueryLog.objects.filter(engine="values").order_by("id").values_list(*fields))
    for method in fast_methods:
        assert list(QueryLog.objects.filter(engine=method).order_by("id").values_list(*fields)) == orm, method
    # And the raw values in the database (text on SQLite), which indexes and range queries see.
    with connection.cursor() as cursor:
        cursor.execute("SELECT engine, timestamp, client FROM querylog_querylog ORDER BY id")
        raw = cursor.fetchall()
    for method in fast_methods:
        assert [r[1:] for r in raw if r[0] == method] == [r[1:] for r in raw if r[0] == "bulk_create"], method
    assert fast[2][1] == "2001:db8::1"
    assert len(fast[3][7]) == 255 and fast[4][3] == "d" * 1004
    assert (fast[4][9], fast[5][9]) == (0, 2147483647)


def test_each_backend_gets_its_fastest_write_method_by_default():
    assert QueryLogWriter().method == ("copy" if connection.vendor == "postgresql" else "values")


@pytest.mark.skipif(connection.vendor == "postgresql", reason="COPY is there on PostgreSQL")
def test_copy_is_refused_on_a_database_without_it():
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        QueryLogWriter(method="copy")


@pytest.mark.skipif(connection.vendor != "postgresql", reason=POSTGRES_ONLY)
@pytest.mark.django_db(transaction=True)
def test_a_values_batch_over_postgresqls_parameter_limit_is_split_into_several_statements():
    # 6000 rows of 11 columns: 66,000 parameters, over the protocol's 65,535.
    QueryLogWriter(rollups=True, method="values")(make_entries(6000))

    assert QueryLog.objects.count() == 6000


@pytest.mark.skipif(connection.vendor != "sqlite", reason=SQLITE_ONLY)
@pytest.mark.django_db(transaction=True)
def test_a_batch_over_the_sqlite_variable_limit_is_split_into_several_statements():
    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)  # 4 rows of 11 columns
    try:
        # Unsplit, SQLite would refuse the statement: "too many SQL variables".
        QueryLogWriter(rollups=False)(make_entries(30))
    finally:
        connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)

    assert QueryLog.objects.count() == 30
    assert sorted(QueryLog.objects.values_list("duration_us", flat=True)) == [100 + i for i in range(30)]


@pytest.mark.integration
@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's statement cache")
@pytest.mark.skipif(read_memory().sqlite_bytes is None, reason="no SQLite memory statistics on this platform")
@pytest.mark.django_db(transaction=True)
def test_batches_of_every_size_do_not_fill_sqlites_heap_with_statements():
    # Under load a writer takes whatever is queued, so every batch has a different size.
    # A statement per size would be compiled afresh and kept in sqlite3's 128-statement
    # cache, filling SQLite's heap (`make soak` prints it).
    writer = QueryLogWriter(rollups=True)
    entries = make_entries(1120)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size = -1024")  # 1 MiB: what grows is not the page cache
    writer(entries[:1000])  # the schema and the largest pieces are in memory from here on
    before = read_memory().sqlite_bytes

    for size in range(1000, 1120, 2):  # 60 distinct batch sizes
        writer(entries[:size])

    grown = read_memory().sqlite_bytes - before
    assert QueryLog.objects.count() == 1000 + sum(range(1000, 1120, 2))
    assert grown < 8 * 2**20, f"SQLite's heap grew by {grown / 2**20:.1f} MiB"


@pytest.mark.django_db(transaction=True)
def test_a_writer_without_statement_reuse_writes_the_same_rows():
    entries = make_entries(1234)
    QueryLogWriter("reused", rollups=False)(entries)
    QueryLogWriter("one-per-batch", rollups=False, reuse_sqlite_statements=False)(entries)

    def rows(engine: str) -> list[tuple]:
        fields = [f.name for f in QueryLog._meta.concrete_fields if f.name not in ("id", "engine")]
        return list(QueryLog.objects.filter(engine=engine).order_by("id").values_list(*fields))

    assert len(rows("reused")) == 1234
    assert rows("one-per-batch") == rows("reused")
