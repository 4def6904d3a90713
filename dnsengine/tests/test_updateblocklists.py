"""manage.py updateblocklists and blocklist_update: lists fetched from a loopback server into the database."""

from __future__ import annotations

import random
import re
from datetime import timedelta
from importlib import import_module
from io import StringIO
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.utils import timezone

from dnsengine.blocklists import importer
from dnsengine.core.rules import Decision
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist
from dnsengine.runtime.watcher import snapshot_load
from dnsengine.services import config_generation_current

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("offline_lists")]

defaults = import_module("dnsengine.migrations.0003_default_blocklists")

HOSTS = "# title\n127.0.0.1 localhost\n0.0.0.0 ads.example.com\n0.0.0.0 tracker.example.net # why\n"
# Not lists, each with a few names in it, as random data has: they must not replace one.
_rng = random.Random(11)
JUNK_TEXT = (
    "\n".join(
        "".join(
            _rng.choice("abcdefghijklmnopqrstuvwxyz0123456789.-_ !?#$%&/=*+,;:()<>|@^~")
            for _ in range(_rng.randrange(60))
        )
        for _ in range(2000)
    )
    + "\nlucky.example.com\n"
)
JUNK_BYTES = _rng.randbytes(60_000) + b"\nlucky.example.com\n"


@pytest.fixture(autouse=True)
def fast_fetches(settings):
    settings.GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT = 0.5
    settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS = 3
    settings.GLORYHOLE_BLOCKLIST_MAX_BYTES = 100_000
    settings.GLORYHOLE_BLOCKLIST_MAX_REDIRECTS = 3
    settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS = 24


def subscribe(name: str, url: str, **fields) -> Blocklist:
    return Blocklist.objects.create(name=name, url=url, **fields)


def domains_of(name: str) -> set[str]:
    return set(BlockedDomain.objects.filter(blocklist__name=name).values_list("domain", flat=True))


def run(*args: str) -> tuple[str, str | None]:
    """(stdout, the CommandError's message or None)."""
    out = StringIO()
    try:
        call_command("updateblocklists", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected", "fmt"),
    [
        (HOSTS, {"ads.example.com", "tracker.example.net"}, "hosts"),
        (
            "ads.example.com\n*.wild.example.org\nBücher.example\n",
            {"ads.example.com", "wild.example.org", "xn--bcher-kva.example"},
            "domains",
        ),
        (
            "[Adblock Plus 2.0]\n! comment\n||ads.example.com^\n||tracker.example.net^$important,third-party\n"
            "@@||good.example.com^\nexample.com##.banner\n||ümlaut.example^\n",
            {"ads.example.com", "tracker.example.net", "xn--mlaut-jva.example"},
            "adblock",
        ),
    ],
    ids=["hosts", "domains-wildcard-idn", "adblock"],
)
def test_it_loads_a_subscription_in_each_format(list_server, body, expected, fmt):
    subscribe("list", list_server.serve("/list", body))

    out, error = run("list")

    assert error is None
    assert domains_of("list") == expected
    blocklist = Blocklist.objects.get(name="list")
    assert (blocklist.format, blocklist.domain_count, blocklist.last_error) == (fmt, len(expected), "")
    assert blocklist.source == list_server.url("/list")
    assert f"list: updated, {len(expected)} entries (+{len(expected)} / -0)" in out


def test_adblock_exceptions_feed_the_allowlist_and_modifiers_are_counted(list_server):
    subscribe("adblock", list_server.serve("/list", "||ads.example.com^$important\n@@||good.example.com^\n"))

    run("adblock")

    assert AllowedDomain.objects.get(domain="good.example.com").include_subdomains
    blocklist = Blocklist.objects.get(name="adblock")
    assert blocklist.format == "adblock"


def test_the_summary_line_gives_entries_added_removed_skipped_and_time(list_server):
    url = list_server.serve("/list", "a.example.com\nb.example.com\n")
    subscribe("list", url)
    run("list")
    list_server.serve("/list", "b.example.com\nc.example.com\nnot_a domain!\nc.example.com\n")

    out, error = run("list")

    assert error is None
    expected = r"list: updated, 2 entries \(\+1 / -1\), 2 skipped \(1 malformed line, 1 duplicate\), \d+\.\d s\n"
    assert re.fullmatch(expected, out), out
    assert domains_of("list") == {"b.example.com", "c.example.com"}


def test_a_second_run_gets_a_304_and_writes_nothing(list_server):
    subscribe("list", list_server.serve("/list", HOSTS, etag='"abc"'))
    run("list")
    generation = config_generation_current()
    before = Blocklist.objects.get(name="list")

    out, error = run("list")

    assert error is None
    assert re.fullmatch(r"list: unchanged \(HTTP 304 not modified\), 2 entries, \d+\.\d s\n", out), out
    assert list_server.requests[-1][1]["If-None-Match"] == '"abc"'
    after = Blocklist.objects.get(name="list")
    assert after.last_loaded == before.last_loaded and after.last_checked > before.last_checked
    assert config_generation_current() == generation


def test_force_downloads_without_validators_and_reloads(list_server):
    subscribe("list", list_server.serve("/list", HOSTS, etag='"abc"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT"))
    run("list")

    out, _ = run("--force", "list")

    headers = list_server.requests[-1][1]
    assert "If-None-Match" not in headers and "If-Modified-Since" not in headers
    assert "list: updated, 2 entries (+0 / -0)" in out


def test_an_unchanged_list_without_validators_does_not_make_engines_reload(list_server):
    subscribe("list", list_server.serve("/list", HOSTS))
    run("list")
    generation = config_generation_current()

    out, _ = run("list")

    assert "(+0 / -0)" in out
    assert config_generation_current() == generation


def test_a_changed_list_makes_engines_reload(list_server):
    subscribe("list", list_server.serve("/list", HOSTS))
    run("list")
    generation = config_generation_current()
    list_server.serve("/list", HOSTS + "0.0.0.0 new.example.org\n")

    run("list")

    assert config_generation_current() > generation


# --- failures keep the old contents ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"status": 500}, r"answered HTTP 500 Internal Server Error"),
        ({"body": HOSTS, "delay": 5}, r"did not answer within 0.5 s|sent nothing for 0.5 s"),
        ({"status": 302, "location": "/list"}, r"redirects more than 3 times, or in a loop"),
        ({"body": "<html><body>Log in to the hotel Wi-Fi</body></html>"}, r"sent an HTML page"),
        ({"body": "ads.example.com\n" * 10_000}, r"over the 100,000-byte limit"),
        ({"body": ""}, r"sent an empty body"),
        ({"body": "# only comments\n!and junk\n%%%%\n"}, r"no valid domain in http://127.0.0.1:\d+/list"),
        ({"body": "\x00\x01\x02\xff\xfe" * 300}, r"no valid domain"),
        (
            {"body": JUNK_TEXT},
            r"http://127.0.0.1:\d+/list does not look like a blocklist: [\d,]+ of its [\d,]+ entries are unreadable",
        ),
        ({"body": JUNK_BYTES}, r"http://127.0.0.1:\d+/list does not look like a blocklist: .*not text"),
    ],
    ids=["500", "timeout", "redirect-loop", "html", "oversized", "empty", "no-domains", "binary", "junk", "random"],
)
def test_a_failing_url_keeps_the_old_contents_and_stores_the_error(list_server, route, message):
    subscribe("list", list_server.serve("/list", HOSTS))
    run("list")
    generation = config_generation_current()
    list_server.serve("/list", **route)

    out, error = run("list")

    assert error == "1 of 1 lists not updated"
    assert re.search(rf"list: FAILED, keeps its 2 entries: .*({message})", out), out
    assert domains_of("list") == {"ads.example.com", "tracker.example.net"}
    blocklist = Blocklist.objects.get(name="list")
    assert re.search(message, blocklist.last_error)
    assert blocklist.domain_count == 2
    # Tried again within the hour, not in a day.
    assert blocklist.next_update <= timezone.now() + timedelta(hours=1.1)
    assert config_generation_current() == generation


def test_a_list_with_too_many_names_keeps_the_old_contents(list_server, settings):
    settings.GLORYHOLE_BLOCKLIST_MAX_NAMES = 100
    subscribe("list", list_server.serve("/list", HOSTS))
    run("list")
    list_server.serve("/list", "".join(f"host{i}.example.com\n" for i in range(1000)))

    out, error = run("list")

    assert error == "1 of 1 lists not updated"
    assert re.search(
        r"list: FAILED, keeps its 2 entries: http://127.0.0.1:\d+/list holds more than 100 names; "
        r"nothing of it was used \(GLORYHOLE_BLOCKLIST_MAX_NAMES\)",
        out,
    ), out
    assert domains_of("list") == {"ads.example.com", "tracker.example.net"}
    assert "GLORYHOLE_BLOCKLIST_MAX_NAMES" in Blocklist.objects.get(name="list").last_error


def test_a_line_for_a_whole_tld_is_skipped_and_counted(list_server):
    subscribe("list", list_server.serve("/list", "co.uk\ncom.au\nads.example.com\n"))

    out, error = run("list")

    assert error is None
    assert "list: updated, 1 entries (+1 / -0), 2 skipped (2 public suffix)" in out
    assert domains_of("list") == {"ads.example.com"}


def test_a_success_after_a_failure_clears_the_error(list_server):
    subscribe("list", list_server.serve("/list", status=500))
    run("list")
    assert Blocklist.objects.get(name="list").last_error
    list_server.serve("/list", HOSTS)

    run("list")

    assert Blocklist.objects.get(name="list").last_error == ""


def test_bad_bytes_are_skipped_and_counted(list_server):
    body = (
        b"\xef\xbb\xbfads.example.com\r\n"  # a BOM, and CRLF endings
        b"0.0.0.0 tracker.example.net\r\n"
        b"nul\x00.example.com\r\n" + b"x" * 10_000 + b".example.com\r\n" + b"bad\xff\xfe.example.com\r\n"
        b"-invalid-.example.com\r\n"
        b"last.example.org"  # no newline at the end
    )
    subscribe("list", list_server.serve("/list", body))

    out, error = run("list")

    assert error is None
    assert domains_of("list") == {"ads.example.com", "tracker.example.net", "last.example.org"}
    assert "3 entries" in out
    for reason in ("2 not text", "1 line too long", "1 invalid domain"):
        assert reason in out


# --- which lists ----------------------------------------------------------------------------------


def test_without_names_it_updates_every_enabled_subscription(list_server):
    subscribe("one", list_server.serve("/one", "one.example.com\n"))
    subscribe("two", list_server.serve("/two", "two.example.com\n"))
    subscribe("off", list_server.serve("/off", "off.example.com\n"), enabled=False)
    Blocklist.objects.create(name="by hand")

    out, error = run()

    assert error is None
    assert domains_of("one") == {"one.example.com"} and domains_of("two") == {"two.example.com"}
    assert "/off" not in list_server.paths()
    assert "by hand" not in out


def test_a_named_list_is_updated_even_when_disabled(list_server):
    subscribe("off", list_server.serve("/off", "off.example.com\n"), enabled=False)

    run("off")

    assert domains_of("off") == {"off.example.com"}
    assert Blocklist.objects.get(name="off").enabled is False


def test_an_unknown_name_or_a_list_without_url_is_reported(list_server):
    Blocklist.objects.create(name="by hand")

    out, error = run("by hand", "nope")

    assert "by hand: skipped, no URL to update from" in out
    assert "nope: skipped, no such list" in out
    assert error == "1 of 2 lists not updated"


def test_due_only_takes_the_lists_whose_time_has_come(list_server):
    now = timezone.now()
    subscribe("due", list_server.serve("/due", "due.example.com\n"), next_update=now - timedelta(minutes=1))
    subscribe("new", list_server.serve("/new", "new.example.com\n"))
    subscribe("later", list_server.serve("/later", "later.example.com\n"), next_update=now + timedelta(hours=3))

    run("--due")

    assert sorted(list_server.paths()) == ["/due", "/new"]
    due = Blocklist.objects.get(name="due")
    # The next one a day later, give or take the jitter.
    assert timedelta(hours=22.7) < due.next_update - now < timedelta(hours=25.3)


def test_it_draws_a_progress_bar_on_a_terminal_only(list_server):
    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    subscribe("list", list_server.serve("/list", HOSTS * 100))
    terminal = Terminal()

    call_command("updateblocklists", "list", stdout=StringIO(), stderr=terminal)

    assert "list:" in terminal.getvalue() and "B" in terminal.getvalue()


# --- out of the box -------------------------------------------------------------------------------


def test_a_fresh_install_blocks_from_the_bundled_list():
    # Migration 0003's rows (the offline_lists fixture removed its StevenBlack subscription).
    bundled = Blocklist.objects.get(name=defaults.BUNDLED_NAME)
    assert bundled.enabled and bundled.domain_count == len(domains_of(bundled.name)) > 250
    assert bundled.source == importer.BUNDLED_SOURCE

    matcher = snapshot_load().matcher

    assert matcher.match("pagead2.googlesyndication.com") == Decision("block", f"list:{defaults.BUNDLED_NAME}")
    assert matcher.match("www.example.com") is None


def test_the_migration_subscribes_to_stevenblack_without_fetching_it():
    Blocklist.objects.all().delete()

    defaults.create_default_lists(apps, SimpleNamespace(connection=SimpleNamespace(alias="default")))

    stevenblack = Blocklist.objects.get(name=defaults.STEVENBLACK_NAME)
    assert (stevenblack.url, stevenblack.enabled, stevenblack.domain_count) == (defaults.STEVENBLACK_URL, True, 0)
    assert stevenblack.url == "https://raw.githubusercontent.com/StevenBlack/hosts/master/hosts"
    assert stevenblack.next_update is None  # due at the first check, whenever the machine is online
    assert Blocklist.objects.get(name=defaults.BUNDLED_NAME).domain_count > 250


def test_the_bundled_list_is_reloaded_only_when_its_file_changes(tmp_path, monkeypatch):
    name = defaults.BUNDLED_NAME
    out, error = run(name)
    assert error is None and re.match(rf"{name}: unchanged \(same file\), \d+ entries", out), out

    changed = tmp_path / "bundled.txt"
    changed.write_text("only.example.com\n")
    monkeypatch.setattr(importer, "BUNDLED_PATH", changed)
    out, _ = run(name)

    assert f"{name}: updated, 1 entries" in out
    assert domains_of(name) == {"only.example.com"}
