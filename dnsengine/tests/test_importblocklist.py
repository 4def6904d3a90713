from __future__ import annotations

import io
import random
import re
import sqlite3
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from dnsengine.blocklists import store
from dnsengine.blocklists.formats import BlocklistError, parse_blocklist
from dnsengine.blocklists.importer import blocklist_import, blocklist_load, blocklist_record_error
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist
from dnsengine.services import config_generation_current
from gloryhole_site.testing.rundns import shared_database_url

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


# --- guard rails: junk, size limits, public suffixes, look-alikes ---------------------------------


GOOD = "".join(f"0.0.0.0 ads{i}.example.com\n" for i in range(20))


def random_text(lines: int, seed: int = 3) -> str:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789.-_ !?#$%&/=*+,;:'\"()<>|@^~"
    return "\n".join("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 100))) for _ in range(lines))


@pytest.fixture
def good_list(tmp_path):
    path = tmp_path / "good.txt"
    path.write_text(GOOD)
    run("ads", str(path))
    return path


def assert_kept(before_generation: int) -> None:
    assert domains_of("ads") == {f"ads{i}.example.com" for i in range(20)}
    assert Blocklist.objects.get(name="ads").domain_count == 20
    assert config_generation_current() == before_generation


def test_command_refuses_random_text_and_keeps_the_old_list(tmp_path, good_list):
    path = tmp_path / "junk.txt"
    # A few valid-looking names in it, as random text has: not enough to make it a list.
    path.write_text(random_text(3000) + "\nsome.example.com\nother.example.net\n")
    before = config_generation_current()

    with pytest.raises(CommandError) as refused:
        run("ads", str(path))

    message = str(refused.value)
    assert re.fullmatch(
        r'blocklist "ads" not loaded: .*junk\.txt does not look like a blocklist: [\d,]+ of its [\d,]+ entries '
        r"are unreadable \(read as \w+; skipped [\d,]+ [a-z ]+(, [\d,]+ [a-z ]+)*\)",
        message,
    ), message
    assert_kept(before)
    assert "does not look like a blocklist" in Blocklist.objects.get(name="ads").last_error


def test_command_refuses_random_bytes_and_keeps_the_old_list(tmp_path, good_list):
    path = tmp_path / "random.bin"
    # With one name in it, as 20 MB of random bytes had: it must not become the whole list.
    path.write_bytes(random.Random(5).randbytes(2_000_000) + b"\none.example.com\n")
    before = config_generation_current()

    with pytest.raises(CommandError, match=r"random\.bin does not look like a blocklist: .* not text"):
        run("ads", str(path))

    assert_kept(before)


def test_command_refuses_a_file_with_too_many_names_and_keeps_the_old_list(tmp_path, good_list, settings):
    settings.GLORYHOLE_BLOCKLIST_MAX_NAMES = 100
    path = tmp_path / "huge.txt"
    path.write_text("".join(f"host{i}.example.com\n" for i in range(5000)))
    before = config_generation_current()

    with pytest.raises(CommandError) as refused:
        run("ads", str(path))

    assert str(refused.value).endswith(
        "huge.txt holds more than 100 names; nothing of it was used (GLORYHOLE_BLOCKLIST_MAX_NAMES)"
    )
    assert_kept(before)
    assert "GLORYHOLE_BLOCKLIST_MAX_NAMES" in Blocklist.objects.get(name="ads").last_error


def test_command_refuses_a_file_over_the_byte_limit_and_keeps_the_old_list(tmp_path, good_list, settings):
    settings.GLORYHOLE_BLOCKLIST_MAX_BYTES = 10_000
    path = tmp_path / "big.txt"
    path.write_text("ads.example.org\n" * 1000)
    before = config_generation_current()

    with pytest.raises(CommandError, match=r"big\.txt is 16,000 bytes, over the 10,000-byte limit.*MAX_BYTES\)$"):
        run("ads", str(path))

    assert_kept(before)


def test_command_skips_and_counts_lines_that_would_block_a_whole_tld(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("co.uk\n0.0.0.0 com.au\ncom\nads.co.uk\nads.example.com\n")

    out = run("ads", str(path))

    assert domains_of("ads") == {"ads.co.uk", "ads.example.com"}
    assert "skipped 2 public suffix, 1 invalid domain" in out


def test_command_never_stores_a_lookalike_as_the_name_it_imitates(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("ⓖⓞⓞⓖⓛⓔ.com\n\uff47\uff4f\uff4f\uff47\uff4c\uff45.com\nbücher.example\n")

    out = run("ads", str(path))

    assert domains_of("ads") == {"xn--bcher-kva.example"}
    assert "skipped 2 invalid domain" in out


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_command_exits_non_zero_with_one_line_on_refusal(tmp_path, good_list, monkeypatch):
    path = tmp_path / "junk.txt"
    path.write_text(random_text(500))
    monkeypatch.setenv("DATABASE_URL", shared_database_url())

    done = subprocess.run(
        [sys.executable, "manage.py", "importblocklist", "ads", str(path)],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('CommandError: blocklist "ads" not loaded: '), done.stderr


# --- the service: the same refusals for every caller ------------------------------------------------


def test_import_refuses_a_mostly_unreadable_result_given_directly():
    blocklist_import("ads", parse_blocklist(["a.example.com"]))
    before = config_generation_current()
    junk = parse_blocklist(["a.example.com", *random_text(200).split("\n")], "domains")

    with pytest.raises(BlocklistError, match='the new contents of blocklist "ads" does not look like a blocklist'):
        blocklist_import("ads", junk)

    assert domains_of("ads") == {"a.example.com"}
    assert config_generation_current() == before


def test_import_refuses_a_result_over_the_name_limit(settings):
    settings.GLORYHOLE_BLOCKLIST_MAX_NAMES = 2
    with pytest.raises(BlocklistError, match="would hold 3 names, over the 2-name limit"):
        blocklist_import("ads", parse_blocklist(["a.example.com", "b.example.com", "c.example.com"]))
    assert not Blocklist.objects.filter(name="ads").exists()


def test_load_stops_reading_a_stream_at_the_byte_limit_and_records_why(settings):
    blocklist_import("ads", parse_blocklist(["a.example.com"]))
    settings.GLORYHOLE_BLOCKLIST_MAX_BYTES = 4096

    with pytest.raises(
        BlocklistError, match=r"upload\.txt is over the 4,096-byte limit; .*\(GLORYHOLE_BLOCKLIST_MAX_BYTES\)"
    ):
        blocklist_load("ads", io.BytesIO(b"b.example.com\n" * 10_000), display="upload.txt")

    assert domains_of("ads") == {"a.example.com"}
    assert "4,096-byte limit" in Blocklist.objects.get(name="ads").last_error


# --- the service: writing without holding the database for long --------------------------------------


@pytest.mark.django_db(transaction=True)
def test_import_lets_another_writer_in_between_its_pieces(monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's one write lock; PostgreSQL locks rows")
    monkeypatch.setattr(store, "WRITE_SLICE", 0.0)
    monkeypatch.setattr(store, "BATCH_SIZE", 100)
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
    got_in = []
    real_sleep = store.time.sleep

    def pause(seconds: float) -> None:
        # Another process's writer (the query log's), without any patience: the lock must be free now.
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        got_in.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(store.time, "sleep", pause)
    try:
        blocklist_import("ads", parse_blocklist([f"host{i}.example.com" for i in range(1000)]))
        blocklist_import("ads", parse_blocklist([f"host{i}.example.org" for i in range(1000)]))
    finally:
        other.close()

    assert len(got_in) >= 20  # 10 pieces of inserts, then 10 + 2 of inserts and deletes
    assert domains_of("ads") == {f"host{i}.example.org" for i in range(1000)}


def test_import_compares_again_when_another_import_wrote_the_list_meanwhile(monkeypatch):
    blocklist_import("ads", parse_blocklist(["a.example.com", "b.example.com"]))
    real = store.write_difference
    rounds = []

    def racing(blocklist_id, new_sorted):
        counts = real(blocklist_id, new_sorted)
        if not rounds:
            # Another import of "ads", at the same moment, adds a name of its own.
            BlockedDomain.objects.bulk_create([BlockedDomain(blocklist_id=blocklist_id, domain="other.example.com")])
        rounds.append(counts)
        return counts

    monkeypatch.setattr(store, "write_difference", racing)

    summary = blocklist_import("ads", parse_blocklist(["b.example.com", "c.example.com"]))

    assert rounds == [(1, 1), (0, 1)]
    assert domains_of("ads") == {"b.example.com", "c.example.com"}
    assert (summary.added, summary.removed) == (1, 2)
    assert Blocklist.objects.get(name="ads").domain_count == 2


def test_import_survives_another_import_inserting_a_name_it_is_about_to_add(monkeypatch):
    blocklist_import("ads", parse_blocklist(["a.example.com", "b.example.com"]))
    real = store.blocklist_names

    def racing(blocklist_id, *, ordered=False):
        yield from real(blocklist_id, ordered=ordered)
        # The other import adds c.example.com once this one has compared, before it writes.
        BlockedDomain.objects.create(blocklist_id=blocklist_id, domain="c.example.com")
        monkeypatch.setattr(store, "blocklist_names", real)

    monkeypatch.setattr(store, "blocklist_names", racing)

    blocklist_import("ads", parse_blocklist(["b.example.com", "c.example.com"]))

    # SQLite skips the duplicate row (INSERT OR IGNORE); PostgreSQL's COPY fails and its slice is undone.
    assert domains_of("ads") == {"b.example.com", "c.example.com"}
    assert Blocklist.objects.get(name="ads").domain_count == 2
