"""Block rules and the matcher: what is blocked, what is allowed, and what the log says decided it."""

from __future__ import annotations

import pytest

from dnsengine.core.rules import MAX_REGEX_LENGTH, Decision, Matcher, compile_rule


def matches(kind: str, pattern: str, name: str) -> bool:
    compile_rule(kind, pattern)  # raises on a bad pattern, which Matcher.build would skip
    return Matcher.build(rules=[(kind, pattern)]).match(name) is not None


# -- compile_rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ads.example.com", True),
        ("a.b.example.com", True),
        ("example.com", False),
        ("badexample.com", False),
        ("ads.example.com.evil.net", False),
        ("ads.examplexcom", False),
    ],
)
def test_a_star_dot_wildcard_matches_subdomains_only(name, expected):
    assert matches("wildcard", "*.example.com", name) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ads.example.com", True),
        ("ads42.example.com", True),
        ("ads.cdn.example.com", True),  # '*' crosses dots
        ("bads.example.com", False),
        ("ad.example.com", False),
    ],
)
def test_a_wildcard_is_anchored_at_both_ends(name, expected):
    assert matches("wildcard", "ads*.example.com", name) is expected


def test_a_question_mark_in_a_wildcard_matches_one_character():
    assert matches("wildcard", "ad?.example.com", "ad1.example.com")
    assert not matches("wildcard", "ad?.example.com", "ad12.example.com")
    assert not matches("wildcard", "ad?.example.com", "ad.example.com")


def test_a_wildcard_is_lower_cased_and_loses_its_trailing_dot():
    assert matches("wildcard", "  *.Example.COM.  ", "x.example.com")


@pytest.mark.parametrize("pattern", ["ads+.example.com", "(a|b).example.com", "ads example.com", "ads/.com", "é.com"])
def test_a_wildcard_with_other_characters_is_refused(pattern):
    with pytest.raises(ValueError, match="a wildcard may hold only"):
        compile_rule("wildcard", pattern)


@pytest.mark.parametrize("kind", ["wildcard", "regex"])
@pytest.mark.parametrize("pattern", ["", "   ", "\t\n"])
def test_an_empty_pattern_is_refused(kind, pattern):
    with pytest.raises(ValueError, match="the pattern is empty"):
        compile_rule(kind, pattern)


def test_a_pattern_longer_than_the_limit_is_refused():
    assert matches("regex", "a" * MAX_REGEX_LENGTH, "a" * MAX_REGEX_LENGTH)

    with pytest.raises(ValueError, match=f"longer than {MAX_REGEX_LENGTH} characters"):
        compile_rule("regex", "a" * (MAX_REGEX_LENGTH + 1))


def test_an_invalid_regex_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"^not a valid regular expression: missing \)"):
        compile_rule("regex", "(ads")


def test_an_unknown_rule_kind_is_refused():
    with pytest.raises(ValueError, match="unknown rule kind 'glob'"):
        compile_rule("glob", "*.example.com")


def test_a_regex_ignores_case():
    assert matches("regex", r"^ADS\d+\.", "ads42.example.com")


# -- Matcher: block lists ----------------------------------------------------------------


def test_a_listed_domain_blocks_itself_and_its_subdomains():
    matcher = Matcher.build(lists=[("EasyList", ["tracker.net"])])

    assert matcher.match("tracker.net") == Decision("block", "list:EasyList")
    assert matcher.match("a.b.tracker.net") == Decision("block", "list:EasyList")
    assert matcher.match("nottracker.net") is None
    assert matcher.match("net") is None
    assert matcher.match("tracker.net.example.org") is None


def test_a_name_in_two_lists_keeps_the_first_attribution():
    matcher = Matcher.build(lists=[("first", ["ads.example.com"]), ("second", ["ads.example.com", "other.org"])])

    assert matcher.match("ads.example.com") == Decision("block", "list:first")
    assert matcher.match("other.org") == Decision("block", "list:second")
    assert matcher.size == 2


def test_the_most_specific_listed_domain_decides_the_attribution():
    matcher = Matcher.build(lists=[("broad", ["example.com"]), ("narrow", ["ads.example.com"])])

    assert matcher.match("x.ads.example.com") == Decision("block", "list:narrow")
    assert matcher.match("www.example.com") == Decision("block", "list:broad")


def test_nothing_matches_an_empty_matcher():
    matcher = Matcher.build()

    assert matcher.match("example.com") is None
    assert matcher.match("") is None
    assert matcher.size == 0


# -- Matcher: rules ----------------------------------------------------------------------


def test_a_wildcard_rule_blocks_subdomains_but_not_the_domain():
    matcher = Matcher.build(rules=[("wildcard", "*.doubleclick.net")])

    assert matcher.match("x.doubleclick.net") == Decision("block", "wildcard:*.doubleclick.net")
    assert matcher.match("doubleclick.net") is None


def test_a_regex_rule_blocks_with_its_pattern_as_the_label():
    matcher = Matcher.build(rules=[("regex", r"^ads?\d+\.")])

    assert matcher.match("ad42.example.org") == Decision("block", r"regex:^ads?\d+\.")
    assert matcher.match("add.example.org") is None


def test_a_regex_rule_matches_anywhere_in_the_name():
    # Pi-hole's regex rules are unanchored (POSIX regexec); its usual form for
    # "this domain and everything below" only works that way.
    matcher = Matcher.build(rules=[("regex", r"(\.|^)doubleclick\.net$"), ("regex", "telemetry")])

    assert matcher.match("doubleclick.net") == Decision("block", r"regex:(\.|^)doubleclick\.net$")
    assert matcher.match("ad.doubleclick.net") == Decision("block", r"regex:(\.|^)doubleclick\.net$")
    assert matcher.match("notdoubleclick.net") is None
    assert matcher.match("eu.telemetry.vendor.com") == Decision("block", "regex:telemetry")


def test_the_first_matching_rule_decides_the_attribution():
    matcher = Matcher.build(rules=[("wildcard", "*.example.com"), ("regex", "^ads")])

    assert matcher.match("ads.example.com") == Decision("block", "wildcard:*.example.com")


def test_a_listed_domain_wins_the_attribution_over_a_rule():
    matcher = Matcher.build(lists=[("EasyList", ["example.com"])], rules=[("wildcard", "*.example.com")])

    assert matcher.match("ads.example.com") == Decision("block", "list:EasyList")


def test_invalid_rules_are_skipped_without_stopping_the_build():
    matcher = Matcher.build(
        rules=[("regex", "(broken"), ("glob", "x"), ("wildcard", "a+b"), ("wildcard", ""), ("regex", "^ads\\.")]
    )

    assert len(matcher.rules) == 1
    assert matcher.match("ads.example.com") == Decision("block", "regex:^ads\\.")


# -- Matcher: allowlist ------------------------------------------------------------------


def test_an_exact_allow_wins_over_a_listed_parent_a_wildcard_and_a_regex():
    matcher = Matcher.build(
        lists=[("EasyList", ["example.org"])],
        rules=[("wildcard", "*.example.org"), ("regex", "cdn")],
        allowed=[("cdn.example.org", False)],
    )

    assert matcher.match("cdn.example.org") == Decision("allow", "allow:cdn.example.org")


def test_an_exact_allow_does_not_cover_subdomains():
    matcher = Matcher.build(lists=[("EasyList", ["example.org"])], allowed=[("cdn.example.org", False)])

    assert matcher.match("sub.cdn.example.org") == Decision("block", "list:EasyList")
    assert matcher.match("other.example.org") == Decision("block", "list:EasyList")


def test_an_allow_with_subdomains_covers_the_domain_and_everything_below():
    matcher = Matcher.build(
        lists=[("EasyList", ["example.org", "ads.good.example.org"])],
        rules=[("wildcard", "*.good.example.org"), ("regex", "^x")],
        allowed=[("good.example.org", True)],
    )

    assert matcher.match("good.example.org") == Decision("allow", "allow:*.good.example.org")
    assert matcher.match("ads.good.example.org") == Decision("allow", "allow:*.good.example.org")
    assert matcher.match("x.y.good.example.org") == Decision("allow", "allow:*.good.example.org")
    assert matcher.match("bad.example.org") == Decision("block", "list:EasyList")
    assert matcher.match("notgood.example.org") == Decision("block", "list:EasyList")


def test_an_allowed_name_is_reported_as_allowed_even_when_nothing_blocks_it():
    matcher = Matcher.build(allowed=[("example.com", False)])

    assert matcher.match("example.com") == Decision("allow", "allow:example.com")
    assert matcher.match("www.example.com") is None


def test_allowed_names_are_normalised_and_invalid_ones_skipped():
    matcher = Matcher.build(
        lists=[("L", ["good.example.org", "lan", "xn--caf-dma.example"])],
        allowed=[
            ("  Good.Example.ORG.  ", False),
            ("lan", True),
            ("café.example", False),
            ("not a domain!", True),
            ("-bad-.example", False),
            ("", True),
        ],
    )

    assert matcher.match("good.example.org") == Decision("allow", "allow:good.example.org")
    assert matcher.match("printer.lan") == Decision("allow", "allow:*.lan")
    assert matcher.match("xn--caf-dma.example") == Decision("allow", "allow:xn--caf-dma.example")
    assert set(matcher.allowed_exact) == {"good.example.org", "xn--caf-dma.example"}
    assert set(matcher.allowed_tree) == {"lan"}
