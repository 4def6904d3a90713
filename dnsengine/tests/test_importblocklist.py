from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dnsengine.blocklist import BlocklistError, parse_blocklist
from dnsengine.blocklist_services import blocklist_import, blocklist_record_error
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist
from dnsengine.services import config_generation_current

pytestmark = pytest.mark.django_db


def domains_of(name: str) -> set[str]:
    return set(BlockedDomain.objects.filter(blocklist__name=name).values_list("domain", flat=True))


def run(*args: str) -> str:
    out = StringIO()
    call_command("importblocklist", *args, stdout=out)
    return out.getvalue()


# --- the service ---------------------------------------------------------------------------------


def test_import_creates_the_list_with_its_domains():
    result = parse_blocklist(["0.0.0.0 a.example.com", "0.0.0.0 b.example.com"])
    summary = blocklist_import("ads", result, source="/lists/ads.txt")
    bl = Blocklist.objects.get(name="ads")
    assert domains_of("ads") == {"a.example.com", "b.example.com"}
    assert (bl.domain_count, bl.source, bl.format, bl.enabled, bl.last_error) == (
        2,
        "/lists/ads.txt",
        "hosts",
        True,
        "",
    )
    assert bl.last_loaded is not None
    assert (summary.created, summary.domains, summary.added, summary.removed) == (True, 2, 2, 0)


def test_import_replaces_the_domains_and_counts_what_was_added_and_removed():
    blocklist_import("ads", parse_blocklist(["a.example.com", "b.example.com", "c.example.com"]))
    summary = blocklist_import("ads", parse_blocklist(["b.example.com", "c.example.com", "d.example.com"]))
    assert domains_of("ads") == {"b.example.com", "c.example.com", "d.example.com"}
    assert (summary.created, summary.added, summary.removed) == (False, 1, 1)
    assert Blocklist.objects.get(name="ads").domain_count == 3


def test_import_replaces_every_domain_when_nothing_is_kept():
    blocklist_import("ads", parse_blocklist(["a.example.com", "b.example.com"]))
    summary = blocklist_import("ads", parse_blocklist(["c.example.com"]))
    assert domains_of("ads") == {"c.example.com"}
    assert (summary.added, summary.removed) == (1, 2)


def test_import_leaves_other_lists_alone():
    blocklist_import("one", parse_blocklist(["a.example.com"]))
    blocklist_import("two", parse_blocklist(["a.example.com", "b.example.com"]))
    blocklist_import("two", parse_blocklist(["c.example.com"]))
    assert domains_of("one") == {"a.example.com"}


def test_import_clears_the_last_error():
    Blocklist.objects.create(name="ads", last_error="cannot read it")
    blocklist_import("ads", parse_blocklist(["a.example.com"]))
    assert Blocklist.objects.get(name="ads").last_error == ""


def test_import_bumps_the_config_generation_once_per_import():
    blocklist_import("ads", parse_blocklist(["a.example.com", "b.example.com"]))
    before = config_generation_current()
    blocklist_import("ads", parse_blocklist(["c.example.com", "d.example.com"]))
    # Exactly one: the raw deletes and inserts must not fire one signal per row.
    assert config_generation_current() == before + 1


def test_import_refuses_a_result_without_domains_and_keeps_the_old_ones():
    blocklist_import("ads", parse_blocklist(["a.example.com"]))
    before = config_generation_current()
    with pytest.raises(BlocklistError, match="no valid domain"):
        blocklist_import("ads", parse_blocklist(["# nothing here", "not-a-domain"]))
    assert domains_of("ads") == {"a.example.com"}
    assert Blocklist.objects.get(name="ads").domain_count == 1
    assert config_generation_current() == before


def test_import_creates_an_allowed_domain_for_each_adblock_exception():
    summary = blocklist_import("ads", parse_blocklist(["||ads.example.com^", "@@||good.example.com^"]))
    allowed = AllowedDomain.objects.get(domain="good.example.com")
    assert (allowed.include_subdomains, allowed.enabled, allowed.comment) == (True, True, "from list ads")
    assert summary.allowed_added == 1


def test_import_leaves_an_existing_allowed_domain_as_it_is():
    AllowedDomain.objects.create(domain="good.example.com", enabled=False, comment="mine")
    summary = blocklist_import("ads", parse_blocklist(["||ads.example.com^", "@@||good.example.com^"]))
    allowed = AllowedDomain.objects.get(domain="good.example.com")
    assert (allowed.include_subdomains, allowed.enabled, allowed.comment) == (False, False, "mine")
    assert summary.allowed_added == 0


def test_import_keeps_a_disabled_list_disabled_unless_told_otherwise():
    Blocklist.objects.create(name="ads", enabled=False)
    blocklist_import("ads", parse_blocklist(["a.example.com"]))
    assert Blocklist.objects.get(name="ads").enabled is False
    blocklist_import("ads", parse_blocklist(["a.example.com"]), enabled=True)
    assert Blocklist.objects.get(name="ads").enabled is True


def test_recording_an_error_for_an_unknown_list_creates_nothing():
    assert blocklist_record_error("nope", "broken") is False
    assert not Blocklist.objects.filter(name="nope").exists()


# --- the command ---------------------------------------------------------------------------------


def test_command_imports_a_file_and_prints_one_summary(tmp_path):
    path = tmp_path / "hosts.txt"
    path.write_text("# list\n127.0.0.1 localhost\n0.0.0.0 a.example.com\n0.0.0.0 b.example.com\nbad_line here\n")
    out = run("ads", str(path))
    assert domains_of("ads") == {"a.example.com", "b.example.com"}
    bl = Blocklist.objects.get(name="ads")
    assert (bl.format, bl.source, bl.domain_count) == ("hosts", str(path), 2)
    assert out.count("\n") == 1
    assert 'Blocklist "ads" created: 2 domains (+2 / -0), format hosts; 5 lines read' in out
    assert "skipped 1 hosts boilerplate, 1 malformed line" in out
    assert " s\n" in out


def test_command_uses_the_given_format(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("||a.example.com^\nb.example.com\n")
    run("ads", str(path), "--format", "domains")
    assert domains_of("ads") == {"b.example.com"}
    assert Blocklist.objects.get(name="ads").format == "domains"


def test_command_creates_a_disabled_list_when_asked(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a.example.com\n")
    run("ads", str(path), "--disabled")
    assert Blocklist.objects.get(name="ads").enabled is False


def test_command_imports_adblock_exceptions_as_allowed_domains(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("[Adblock Plus 2.0]\n||a.example.com^\n@@||good.example.com^\n")
    out = run("ads", str(path))
    assert AllowedDomain.objects.filter(domain="good.example.com", include_subdomains=True).exists()
    assert "1 allowed domains added" in out


def test_command_fails_on_a_missing_file_and_keeps_the_old_list(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a.example.com\n")
    run("ads", str(path))
    with pytest.raises(CommandError, match=r"cannot read .*missing\.txt"):
        run("ads", str(tmp_path / "missing.txt"))
    bl = Blocklist.objects.get(name="ads")
    assert domains_of("ads") == {"a.example.com"}
    assert bl.domain_count == 1
    assert "cannot read" in bl.last_error
    assert bl.source == str(path)


def test_command_fails_on_a_file_without_domains_and_stores_the_error(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a.example.com\n")
    run("ads", str(path))
    path.write_text("<!doctype html><html><body>Not Found</body></html>\n")
    with pytest.raises(CommandError, match="HTML page"):
        run("ads", str(path))
    assert domains_of("ads") == {"a.example.com"}
    assert "HTML page" in Blocklist.objects.get(name="ads").last_error


def test_command_failing_for_a_new_list_creates_nothing(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# nothing\n")
    with pytest.raises(CommandError, match="no valid domain"):
        run("ads", str(path))
    # Only the default lists of a fresh install are there (migration 0003).
    assert not Blocklist.objects.filter(name="ads").exists()


def test_command_bumps_the_config_generation(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a.example.com\n")
    before = config_generation_current()
    run("ads", str(path))
    assert config_generation_current() > before
