"""querylog.db: conversions and how a batch is cut into SQLite statements."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest
from django.db.utils import ConnectionHandler

from querylog.db import SQLITE_CHUNK_ROWS, sqlite_chunk_sizes, sqlite_utc_text


def test_the_sqlite_timestamp_text_matches_djangos_for_many_values():
    # Django's SQLite conversion, whatever the test database is: needs no connection.
    sqlite = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})["default"]
    fast = sqlite_utc_text()
    rng = random.Random(4)
    values = [rng.uniform(0, 4e9) for _ in range(20000)]
    values += [k + d for k in (0, 1_700_000_000, 2_000_000_000) for d in (0, 1e-7, 4.9e-7, 5e-7, 0.9999995, 0.9999996)]
    values += [math.floor(v) for v in values[:1000]]
    adapt = sqlite.ops.adapt_datetimefield_value
    mismatches = [v for v in values if fast(v) != adapt(datetime.fromtimestamp(v, UTC))]
    assert mismatches == []


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 257, 1000, 1999, 2000, 2001, 4100])
@pytest.mark.parametrize("most", [2978, 90, 1])
def test_sqlite_pieces_are_full_pieces_then_powers_of_two_that_add_up(n, most):
    sizes = sqlite_chunk_sizes(n, most)

    top = min(most, SQLITE_CHUNK_ROWS)
    full = n // top
    assert sum(sizes) == n
    assert sizes[:full] == [top] * full
    rest = sizes[full:]
    assert all(s & (s - 1) == 0 and s < top for s in rest)
    assert sorted(set(rest), reverse=True) == rest  # each power at most once: popcount pieces


def test_a_full_default_batch_is_one_statement():
    assert sqlite_chunk_sizes(2000, 2978) == [2000]


def test_without_reuse_a_batch_is_cut_by_the_variable_limit_alone():
    assert sqlite_chunk_sizes(4100, 2978, reuse=False) == [2978, 1122]
    assert sqlite_chunk_sizes(1999, 2978, reuse=False) == [1999]
