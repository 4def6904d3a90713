"""Regex lists: one regular expression a line, read only from a list whose format says "regex"."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dnsengine.blocklists.formats import MAX_REGEX_RULES, BlocklistError, has_nested_quantifier, parse_blocklist
from dnsengine.blocklists.importer import blocklist_import
from dnsengine.core.rules import MAX_REGEX_LENGTH, Decision
from dnsengine.models import Blocklist, BlockRule
from dnsengine.services import config_generation_current
from gloryhole_site.testing.dnsclient import Client, answers
from gloryhole_site.testing.engine import engine_reload

REGEX_LIST = (
    "# mmotti-style regex list\n"
    r"^ad([sxv]?[0-9]*|system)[_.-]([^.]+\.){1,}|[_.-]ad([sxv]?[0-9]*|system)[_.-]"
    "\n"
    r"(\.|^)doubleclick\.net$"
    "\n"
    "\n"
    r"^telemetry\."
    "  # inline comment\n"
)


def rules_of(name: str) -> list[str]:
    return list(BlockRule.objects.filter(blocklist__name=name).order_by("pk").values_list("pattern", flat=True))


def import_regex(name: str, *lines: str):
    return blocklist_import(name, parse_blocklist(list(lines), "regex"), source="test")


# --- parsing ------------------------------------------------------------------------------------


def test_it_reads_one_regex_a_line_and_skips_comments():
    result = parse_blocklist(REGEX_LIST.splitlines(), "regex")

    assert result.format == "regex"
    assert result.rules == [
        r"^ad([sxv]?[0-9]*|system)[_.-]([^.]+\.){1,}|[_.-]ad([sxv]?[0-9]*|system)[_.-]",
        r"(\.|^)doubleclick\.net$",
        r"^telemetry\.",
    ]
    assert result.domains == []
    assert result.comments == 2
    assert not result.skipped


def test_invalid_too_long_duplicate_and_pihole_only_regexes_are_skipped_and_counted():
    lines = [
        "(ads",  # unbalanced
        "a" * (MAX_REGEX_LENGTH + 1),
        r"^ads\.",
        r"^ads\.",
        r"^tracker\.;querytype=AAAA",
        "[z-a]",
        r"^ad[_.-]([^.[:space:]]+\.){1,}",
    ]

    result = parse_blocklist(lines, "regex")

    assert result.rules == [r"^ads\."]
    assert result.skipped == {
        "invalid regex": 2,
        "regex too long": 1,
        "duplicate": 1,
        "Pi-hole regex extension": 1,
        "POSIX character class": 1,
    }


@pytest.mark.parametrize("pattern", ["(a+)+$", r"^(\w*\.?)*x$", "(x+){2,}", "((ad)+s)*", r"([a-z.]+\.)+evil$"])
def test_a_regex_with_a_nested_quantifier_is_refused(pattern):
    assert has_nested_quantifier(pattern)
    result = parse_blocklist([pattern], "regex")
    assert result.rules == []
    assert result.skipped == {"nested quantifier": 1}


@pytest.mark.parametrize(
    "pattern",
    [
        r"^(.+[_.-])?adse?rv(er?|ice)?s?[0-9]*[_.-]",
        r"(\.|^)doubleclick\.net$",
        "(ads)+",
        "(a+)?b",
        "(x+){0,1}",
        r"\(a+\)+",
        "[(a+)]+",
        r"([a-z0-9-]+\.)*tracker\.example$",
        r"^(?:[^.]+\.)+ads$",
    ],
)
def test_a_regex_without_nested_repetition_is_kept(pattern):
    assert not has_nested_quantifier(pattern)
    assert parse_blocklist([pattern], "regex").rules == [pattern]


def test_only_the_first_regexes_up_to_the_limit_are_kept():
    result = parse_blocklist([f"^ads{i}\\." for i in range(MAX_REGEX_RULES + 3)], "regex")
    assert len(result.rules) == MAX_REGEX_RULES
    assert result.skipped == {f"over the {MAX_REGEX_RULES:,}-regex limit": 3}


def test_a_regex_list_is_never_auto_detected():
    result = parse_blocklist([r"(\.|^)doubleclick\.net$", r"^ads?\d+\."])
    assert result.format != "regex"
    assert result.rules == []


# --- storing -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_stores_the_regexes_as_rules_of_the_list():
    before = config_generation_current()

    summary = import_regex("regexes", r"^ads\.", r"(\.|^)doubleclick\.net$")

    blocklist = Blocklist.objects.get(name="regexes")
    assert rules_of("regexes") == [r"^ads\.", r"(\.|^)doubleclick\.net$"]
    assert set(blocklist.rules.values_list("kind", "enabled")) == {("regex", True)}
    assert (blocklist.format, blocklist.domain_count) == ("regex", 2)
    assert (summary.rules, summary.rules_added, summary.rules_removed) == (2, 2, 0)
    assert "2 regex rules (+2 / -0)" in summary.describe()
    assert config_generation_current() > before


@pytest.mark.django_db
def test_reimport_replaces_the_rules_and_bumps_only_on_change():
    import_regex("regexes", r"^ads\.", r"^old\.")
    kept_pk = BlockRule.objects.get(pattern=r"^ads\.").pk
    before = config_generation_current()

    summary = import_regex("regexes", r"^ads\.", r"^new\.")

    assert rules_of("regexes") == [r"^ads\.", r"^new\."]
    assert BlockRule.objects.get(pattern=r"^ads\.").pk == kept_pk
    assert (summary.rules_added, summary.rules_removed) == (1, 1)
    assert config_generation_current() > before

    unchanged = config_generation_current()
    import_regex("regexes", r"^ads\.", r"^new\.")
    assert config_generation_current() == unchanged


@pytest.mark.django_db
def test_a_regex_list_without_a_valid_regex_keeps_its_rules():
    import_regex("regexes", r"^ads\.")
    before = config_generation_current()

    with pytest.raises(BlocklistError, match='no valid regex for blocklist "regexes"'):
        import_regex("regexes", "(broken", "# only a comment")

    assert rules_of("regexes") == [r"^ads\."]
    assert config_generation_current() == before


@pytest.mark.django_db
def test_a_pattern_may_be_in_several_lists_and_a_hand_made_rule():
    BlockRule.objects.create(kind="regex", pattern=r"^ads\.")
    import_regex("one", r"^ads\.")
    import_regex("two", r"^ads\.")
    assert BlockRule.objects.filter(pattern=r"^ads\.").count() == 3


@pytest.mark.django_db
def test_deleting_the_list_deletes_its_rules_only():
    BlockRule.objects.create(kind="regex", pattern=r"^mine\.")
    import_regex("regexes", r"^ads\.")
    Blocklist.objects.get(name="regexes").delete()
    assert list(BlockRule.objects.values_list("pattern", flat=True)) == [r"^mine\."]


@pytest.mark.django_db
def test_importblocklist_reads_a_file_as_a_regex_list(tmp_path):
    path = tmp_path / "regex.list"
    path.write_text(REGEX_LIST)
    out = StringIO()

    call_command("importblocklist", "regexes", str(path), "--format", "regex", stdout=out)

    assert len(rules_of("regexes")) == 3
    assert "3 regex rules (+3 / -0), format regex" in out.getvalue()

    path.write_text("# nothing usable\n(a+)+\n")
    with pytest.raises(CommandError, match="no valid regex"):
        call_command("importblocklist", "regexes", str(path), "--format", "regex", stdout=StringIO())
    assert len(rules_of("regexes")) == 3


@pytest.mark.django_db
@pytest.mark.usefixtures("offline_lists")
def test_updateblocklists_keeps_reading_a_regex_subscription_as_regexes(list_server, settings):
    settings.GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT = 0.5
    settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS = 3
    # Plain domains too: read as anything but regexes, this would become a domain list.
    url = list_server.serve("/regex", "^ads\\.\nexample.com\n")
    Blocklist.objects.create(name="regexes", url=url, format=Blocklist.Format.REGEX)
    out = StringIO()

    call_command("updateblocklists", "regexes", stdout=out, stderr=StringIO())

    assert rules_of("regexes") == [r"^ads\.", "example.com"]
    blocklist = Blocklist.objects.get(name="regexes")
    assert (blocklist.format, blocklist.domain_count, blocklist.domains.count()) == ("regex", 2, 0)
    assert "regexes: updated, 2 entries (+2 / -0)" in out.getvalue()


# --- in the engine ------------------------------------------------------------------------------


def test_a_running_engine_blocks_by_a_regex_list_until_it_is_disabled(make_engine, engine_config):
    engine = make_engine(engine_config)
    dns_client = Client(engine.port)
    BlockRule.objects.create(kind="regex", pattern=r"^mine\.")
    import_regex("regexes", r"^ads?\d+\.", r"(\.|^)tracker\.test$")
    engine_reload(engine)

    matcher = engine.resolver.snapshot.matcher
    assert matcher.match("ad42.example.org") == Decision("block", r"list:regexes regex:^ads?\d+\.")
    assert matcher.match("x.tracker.test") == Decision("block", r"list:regexes regex:(\.|^)tracker\.test$")
    assert matcher.match("mine.example.org") == Decision("block", r"regex:^mine\.")
    assert answers(dns_client.query("ad42.example.org")) == ["A 0.0.0.0"]
    assert answers(dns_client.query("x.tracker.test")) == ["A 0.0.0.0"]
    assert answers(dns_client.query("add.example.org")) == ["A 192.0.2.1"]

    blocklist = Blocklist.objects.get(name="regexes")
    blocklist.enabled = False
    blocklist.save()
    engine_reload(engine)

    matcher = engine.resolver.snapshot.matcher
    assert matcher.match("ad42.example.org") is None
    assert matcher.match("mine.example.org") == Decision("block", r"regex:^mine\.")
    # A name not asked before the change: the reply cache cannot answer for the old snapshot.
    assert answers(dns_client.query("ad7.example.org")) == ["A 192.0.2.1"]
    assert answers(dns_client.query("mine.example.org")) == ["A 0.0.0.0"]


@pytest.mark.django_db
def test_the_domain_check_box_sees_list_rules_only_while_their_list_is_enabled():
    from dnsengine.selectors import domain_check

    regex_list = Blocklist.objects.create(name="regexes", format="regex")
    BlockRule.objects.create(kind="regex", pattern=r"(\.|^)telemetry\.", blocklist=regex_list)
    check = domain_check("eu.telemetry.vendor.test")
    assert (check.action, check.decided_by) == ("block", r"list:regexes regex:(\.|^)telemetry\.")
    assert check.rule_matches == [r"list:regexes regex:(\.|^)telemetry\."]
    regex_list.enabled = False
    regex_list.save()
    check = domain_check("eu.telemetry.vendor.test")
    assert (check.action, check.rule_matches) == ("none", [])
