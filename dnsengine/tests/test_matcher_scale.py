"""The matcher's hash table at scale: correct for every name, compact, and loaded in one pass.

No timings here (`make bench-blocklist` measures those): these check what
the compact design could get wrong, probing, attribution, dedup, memory bound.
"""

from __future__ import annotations

import zlib

import pytest

from dnsengine.blocklists.formats import ParseResult
from dnsengine.blocklists.importer import blocklist_import
from dnsengine.core import rules
from dnsengine.core.rules import Decision, Matcher, _DomainTable
from dnsengine.models import Blocklist
from dnsengine.runtime.watcher import snapshot_load

N = 200_000


def names(start: int, stop: int) -> list[str]:
    return [f"host{i}.zone{i % 997}.example{i % 13}.com" for i in range(start, stop)]


@pytest.fixture(scope="module")
def big():
    """200,000 names over two lists; the second repeats 10,000 of the first's."""
    first, second = names(0, N // 2), names(N // 2 - 10_000, N)
    return Matcher.build(lists=[("first", first), ("second", second)])


def test_every_listed_name_and_its_subdomains_are_found_with_their_list(big):
    assert big.size == N
    for i in range(0, N, 7):
        name = f"host{i}.zone{i % 997}.example{i % 13}.com"
        expected = Decision("block", "list:first" if i < N // 2 else "list:second")
        assert big.match(name) == expected
        assert big.match(f"a.b.{name}") == expected


def test_names_near_listed_ones_are_not_found(big):
    for i in range(0, N, 7):
        assert big.match(f"host{i}.zone{i % 997}.example{i % 13}.org") is None
        assert big.match(f"zone{i % 997}.example{i % 13}.com") is None  # a parent of a listed name
        assert big.match(f"xhost{i}.zone{i % 997}.example{i % 13}.com") is None
    assert big.match(f"host{N}.zone{N % 997}.example{N % 13}.com") is None


def test_a_name_in_two_lists_counts_once_and_keeps_the_first_list(big):
    shared = f"host{N // 2 - 1}.zone{(N // 2 - 1) % 997}.example{(N // 2 - 1) % 13}.com"
    assert big.match(shared) == Decision("block", "list:first")
    assert big.blocked.size == N  # 210,000 entries read, 200,000 kept


def test_the_table_stays_under_its_fill_limit_at_about_ten_bytes_a_slot(big):
    table = big.blocked
    slots = len(table.keys)
    assert slots & (slots - 1) == 0  # a power of two: the mask picks the slot
    assert table.size <= slots * rules._MAX_LOAD
    used = table.keys.itemsize * len(table.keys) + table.lists.itemsize * len(table.lists)
    # 10 bytes a slot, at most 1/0.3 slots a name: under 35 bytes a name (a dict of str took ~110).
    assert used / table.size < 35
    assert sum(1 for key in table.keys if key) == table.size


def test_probing_finds_every_name_when_all_keys_share_their_low_bits(monkeypatch):
    # A deliberately bad hash: every key lands on slot 0, so each lookup walks
    # (and wraps around) the probe chain.
    monkeypatch.setattr(rules, "xxh3_64_intdigest", lambda raw: zlib.crc32(raw) << 32)
    listed = names(0, 300)
    matcher = Matcher.build(lists=[("L", listed)])

    assert matcher.size == 300
    assert all(matcher.match(name) == Decision("block", "list:L") for name in listed)
    assert matcher.match("unlisted.example.com") is None


def test_a_name_hashing_to_zero_is_still_found(monkeypatch):
    # 0 marks an empty slot, so such a name is keyed 1.
    monkeypatch.setattr(rules, "xxh3_64_intdigest", lambda raw: 0 if raw == b"zero.example" else zlib.crc32(raw) + 2)
    matcher = Matcher.build(lists=[("L", ["zero.example", "one.example"])])

    assert matcher.match("zero.example") == Decision("block", "list:L")
    assert matcher.match("sub.zero.example") == Decision("block", "list:L")


def test_a_bare_label_in_a_list_blocks_its_subdomains():
    matcher = Matcher.build(lists=[("L", ["lan", "ads.example.com"])])

    assert matcher.blocked.single_labels
    assert matcher.match("printer.lan") == Decision("block", "list:L")
    assert matcher.match("lan") == Decision("block", "list:L")
    assert matcher.match("example.com") is None


def test_without_bare_labels_the_last_label_is_never_looked_up():
    table = _DomainTable.build([["ads.example.com"]])

    assert not table.single_labels
    assert table.find("com") is None and table.find("example.com") is None
    assert table.find("x.ads.example.com") == 0


@pytest.mark.parametrize("name", ["", ".", "a..b", "..", "bücher.example", "\udcff.example.com", "x" * 300])
def test_odd_names_do_not_raise(name):
    matcher = Matcher.build(lists=[("L", ["ads.example.com", "xn--bcher-kva.example"])])

    assert matcher.match(name) is None


@pytest.mark.integration
def test_many_lists_get_wider_list_indices():
    lists = [(f"list{i}", [f"d{i}.example"]) for i in range(70_000)]

    matcher = Matcher.build(lists=lists)

    assert matcher.blocked.lists.typecode == "I"
    assert matcher.match("d69999.example") == Decision("block", "list:list69999")


@pytest.mark.integration
@pytest.mark.django_db
def test_a_reload_streams_lists_larger_than_one_fetch_from_the_database():
    Blocklist.objects.all().delete()
    blocklist_import("big", ParseResult(domains=names(0, 45_000)))
    blocklist_import("small", ParseResult(domains=["only.example.org", names(0, 1)[0]]))
    blocklist_import("off", ParseResult(domains=["off.example.org"]), enabled=False)

    matcher = snapshot_load().matcher

    assert matcher.size == 45_001
    assert matcher.list_names == ["big", "small"]
    assert matcher.match(names(44_999, 45_000)[0]) == Decision("block", "list:big")
    assert matcher.match(names(0, 1)[0]) == Decision("block", "list:big")
    assert matcher.match("only.example.org") == Decision("block", "list:small")
    assert matcher.match("off.example.org") is None
