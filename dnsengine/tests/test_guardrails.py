"""The guard rails' pure logic: what is refused, what needs a confirmation, what a rule is said to block."""

from __future__ import annotations

import pytest

from dnsengine.core.wire import name_to_text
from dnsengine.guardrails import (
    REGEX,
    WILDCARD,
    RecentTraffic,
    blockable_parent,
    covers_domain,
    covers_pattern,
    domain_refusal,
    domain_verdict,
    format_share,
    pattern_verdict,
)

QUIET = RecentTraffic(queries=56_789, matched_queries=1_234, matched_names=12)


def wire(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1",
        "10.0.0.1.",
        "[::1]",
        "::1",
        "[2001:db8::1]",
        "fe80::1%eth0",
        "127.1",  # inet_aton reads it as 127.0.0.1
        "0x7f000001",
        "ads.example.1",  # no top-level domain is a number
        "localhost",
        "LOCALHOST.",
        "printer.localhost",
        "",
        ".",
        "  ",
    ],
)
def test_it_refuses_addresses_localhost_and_the_root(value):
    assert domain_refusal(value)
    assert domain_verdict(value.strip().rstrip(".").lower(), QUIET, 10).refused


@pytest.mark.parametrize(
    "value", ["doubleclick.net", "1.0.0.127.in-addr.arpa", "123.example.com", "localhost.example.com", "mylocalhost"]
)
def test_it_does_not_refuse_names_that_only_look_alike(value):
    assert domain_refusal(value) == ""


def test_the_refusal_says_what_is_wrong():
    assert "IP address" in domain_refusal("[::1]")
    assert "localhost" in domain_refusal("a.localhost")
    assert "root" in domain_refusal(".")


def test_an_ordinary_domain_needs_no_confirmation_and_says_what_it_blocks():
    verdict = domain_verdict("doubleclick.net", QUIET, 10)
    assert not verdict.refused
    assert not verdict.needs_confirmation
    assert verdict.summary == (
        "blocks doubleclick.net and every name below it: 1,234 of 56,789 queries (2.2 %) and 12 names"
        " seen in the last 24 h"
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("com", "single-label name"),
        ("lan", "single-label name"),
        ("co.uk", "top-level domain or registry suffix"),
        ("github.io", "company"),
    ],
)
def test_a_public_suffix_or_single_label_needs_a_confirmation(name, words):
    verdict = domain_verdict(name, QUIET, 10)
    assert not verdict.refused
    assert verdict.needs_confirmation
    assert words in verdict.confirm[0]


def test_a_registrable_name_under_a_suffix_needs_none():
    assert not domain_verdict("example.co.uk", QUIET, 10).needs_confirmation
    assert not domain_verdict("me.github.io", QUIET, 10).needs_confirmation


@pytest.mark.parametrize(("matched", "asks"), [(999, False), (1000, True), (9000, True)])
def test_a_large_share_of_recent_traffic_needs_a_confirmation_from_the_threshold_on(matched, asks):
    traffic = RecentTraffic(queries=10_000, matched_queries=matched, matched_names=3)
    verdict = domain_verdict("cdn.example.net", traffic, 10)
    assert verdict.needs_confirmation is asks
    if asks:
        assert "of the queries of the last 24 h" in verdict.confirm[0]


def test_without_traffic_figures_it_says_so_and_asks_only_for_structure():
    assert "no query-log figures" in domain_verdict("doubleclick.net", None, 10).summary
    empty = RecentTraffic(queries=0, matched_queries=0, matched_names=0)
    assert "no queries were logged" in domain_verdict("doubleclick.net", empty, 0).summary
    assert not domain_verdict("doubleclick.net", empty, 0).needs_confirmation


def test_figures_from_part_of_the_names_say_so():
    partial = RecentTraffic(queries=100, matched_queries=5, matched_names=1, names_seen=80_000, names_tried=50_000)
    summary = pattern_verdict(WILDCARD, "ads*.example.com", partial, 10).summary
    assert "1 name seen" in summary
    assert "of the 50,000 busiest of 80,000 names" in summary


@pytest.mark.parametrize(("share", "text"), [(0.0, "0.0 %"), (0.04, "< 0.1 %"), (2.17, "2.2 %"), (100, "100.0 %")])
def test_shares_read_well(share, text):
    assert format_share(share) == text


# --- Wildcards and regular expressions ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "pattern", "words"),
    [
        (WILDCARD, "*", "root"),
        (REGEX, ".*", "root"),
        (REGEX, "^$", "root"),
        (REGEX, ".", "localhost"),
        (WILDCARD, "*.localhost", "localhost"),
        (WILDCARD, "*host", "localhost"),
        (WILDCARD, "127.0.0.1", "IP address"),
        (REGEX, "(", "not a valid regular expression"),
        (WILDCARD, "a b", "wildcard may hold only"),
    ],
)
def test_it_refuses_patterns_that_match_everything_localhost_or_an_address(kind, pattern, words):
    verdict = pattern_verdict(kind, pattern, QUIET, 10)
    assert words in verdict.refused


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("*.com", "single-label name"),
        ("ads*.com", "single-label name"),
        ("*.co.uk", "registry suffix"),
        ("*.github.io", "company"),
    ],
)
def test_a_wildcard_over_a_whole_public_suffix_needs_a_confirmation(pattern, words):
    verdict = pattern_verdict(WILDCARD, pattern, QUIET, 10)
    assert verdict.needs_confirmation
    assert words in verdict.confirm[0]
    assert "every name below" in verdict.confirm[0]


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [(WILDCARD, "*.doubleclick.net"), (WILDCARD, "ads*.example.com"), (REGEX, r"(^|\.)doubleclick\.net$")],
)
def test_a_narrow_pattern_needs_none(kind, pattern):
    assert not pattern_verdict(kind, pattern, QUIET, 10).needs_confirmation


def test_a_pattern_matching_a_large_share_needs_a_confirmation():
    heavy = RecentTraffic(queries=100, matched_queries=60, matched_names=2)
    verdict = pattern_verdict(REGEX, r"\.", heavy, 10)
    assert verdict.needs_confirmation
    assert "60.0 %" in verdict.confirm[0]


def test_a_wildcard_without_stars_blocks_exactly_one_name():
    verdict = pattern_verdict(WILDCARD, "ads.example.com", QUIET, 10)
    assert verdict.scope == "blocks exactly ads.example.com (not the names below it)"


def test_patterns_cover_names_as_the_engine_matches_them():
    wildcard = covers_pattern(WILDCARD, "*.example.com")
    assert wildcard("a.example.com") and wildcard("x=1.example.com")
    assert not wildcard("example.com") and not wildcard("a.example.com.evil")
    regex = covers_pattern(REGEX, r"doubleclick\.net")  # search: anywhere in the name, case-blind
    assert regex("x.doubleclick.net.evil") and regex("DOUBLECLICK.NET")


def test_a_domain_covers_itself_and_every_name_below_it_whatever_its_labels_hold():
    covers = covers_domain("doubleclick.net")
    for name in ("doubleclick.net", "x=1.doubleclick.net", r"\195\169.doubleclick.net", r"a\032b.doubleclick.net"):
        assert covers(name)
    assert not covers("notdoubleclick.net")
    assert not covers("doubleclick.net.evil")


# --- What "block this domain" offers for a name of the history -----------------------


@pytest.mark.parametrize(
    ("name", "offered"),
    [
        ("ads.example.com", "ads.example.com"),
        ("x=1.doubleclick.net", "doubleclick.net"),
        ("aGVsbG8+d29ybGQ=.evil-ads.test", "evil-ads.test"),
        (r"a\032b.tracker.example", "tracker.example"),
        (r"\195\169.doubleclick.net", "doubleclick.net"),
        (r"a\000b.example.com", "example.com"),
        (r"a\046b.example.com", "example.com"),  # a dot inside a label
        (r"\xc3\xa9.doubleclick.net", "doubleclick.net"),  # the text form of older rows
        ("*.example.com", "example.com"),
        ("-bad.example.com", "example.com"),
        ("x=1.com", "com"),  # offered; blocking it asks for a confirmation
        ("lan", "lan"),
        ("127.0.0.1", None),
        ("x=1.localhost", None),
        ("localhost", None),
        ("", None),
        ("a=b", None),
    ],
)
def test_block_offers_the_nearest_blockable_parent(name, offered):
    assert blockable_parent(name) == offered


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_in_a_label_leads_to_the_listed_parent(byte):
    name = name_to_text(wire(b"a" + bytes([byte]) + b"z", b"doubleclick", b"net"))
    plain = chr(byte).isascii() and (chr(byte).isalnum() or chr(byte) in "-_")
    expected = name if plain else "doubleclick.net"
    assert blockable_parent(name) == expected
    assert covers_domain("doubleclick.net")(name)


def test_a_63_byte_label_and_a_255_byte_name_lead_to_the_listed_parent():
    label = bytes(range(1, 64))
    assert blockable_parent(name_to_text(wire(label, b"doubleclick", b"net"))) == "doubleclick.net"
    longest = wire(b"\xff" * 63, b"\x00" * 63, b"=" * 63, b"." * 45, b"doubleclick", b"net")
    assert len(longest) == 255
    assert blockable_parent(name_to_text(longest)) == "doubleclick.net"
