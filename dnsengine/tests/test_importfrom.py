"""manage.py importfrom: Pi-hole and AdGuard Home files, built here in their documented formats."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from dnsengine.importers import common
from dnsengine.importers.common import Forward, Plan, Record, plan_apply
from dnsengine.models import (
    AllowedDomain,
    BlockedDomain,
    Blocklist,
    BlockRule,
    Client,
    ClientGroup,
    ForwardingRule,
    LocalRecord,
)
from dnsengine.services import config_generation_current
from dnsengine.services.domains import MANUAL_LIST
from gloryhole_site.testing.dnsclient import answers
from gloryhole_site.testing.engine import engine_reload

pytestmark = pytest.mark.django_db

# The tables of Pi-hole's gravity.db that hold the configuration, as its documentation describes them.
GRAVITY_SCHEMA = """
CREATE TABLE "group" (id INTEGER PRIMARY KEY AUTOINCREMENT, enabled BOOLEAN NOT NULL DEFAULT 1,
    name TEXT UNIQUE NOT NULL, date_added INTEGER, date_modified INTEGER, description TEXT);
CREATE TABLE adlist (id INTEGER PRIMARY KEY AUTOINCREMENT, address TEXT UNIQUE NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1, date_added INTEGER, date_modified INTEGER, comment TEXT,
    type INTEGER NOT NULL DEFAULT 0);
CREATE TABLE adlist_by_group (adlist_id INTEGER, group_id INTEGER, PRIMARY KEY (adlist_id, group_id));
CREATE TABLE domainlist (id INTEGER PRIMARY KEY AUTOINCREMENT, type INTEGER NOT NULL DEFAULT 0,
    domain TEXT NOT NULL, enabled BOOLEAN NOT NULL DEFAULT 1, date_added INTEGER, date_modified INTEGER,
    comment TEXT, UNIQUE (domain, type));
CREATE TABLE domainlist_by_group (domainlist_id INTEGER, group_id INTEGER, PRIMARY KEY (domainlist_id, group_id));
CREATE TABLE client (id INTEGER PRIMARY KEY AUTOINCREMENT, ip TEXT NOT NULL UNIQUE, date_added INTEGER,
    date_modified INTEGER, comment TEXT);
CREATE TABLE client_by_group (client_id INTEGER, group_id INTEGER, PRIMARY KEY (client_id, group_id));
"""

PIHOLE_TOML = """
[dns]
upstreams = ["9.9.9.9", "149.112.112.112#5353", "2620:fe::fe"]
hosts = ["192.168.1.10 nas.lan nas", "fd00::10 printer.lan"]
cnameRecords = ["media.lan,nas.lan", "files.lan,nas.lan,600"]
revServers = ["true,192.168.1.0/24,192.168.1.1,lan"]

[webserver]
port = "80"
"""


def make_gravity(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript(GRAVITY_SCHEMA)
    db.executemany(
        'INSERT INTO "group" (id, name, description, enabled) VALUES (?, ?, ?, 1)',
        [(0, "Default", "The default group"), (1, "Kids", "the children's tablets")],
    )
    db.executemany(
        "INSERT INTO adlist (id, address, enabled, comment, type) VALUES (?, ?, ?, ?, ?)",
        [
            (1, "https://lists.example.net/hosts.txt", 1, "Steven's list", 0),
            (2, "https://lists.example.net/kids.txt", 1, "Kids extra", 0),
            (3, "https://lists.example.net/off.txt", 0, "", 0),
            (4, "https://lists.example.net/allow.txt", 1, "an allowlist", 1),
            (5, "file:///etc/pihole/local.list", 1, "local file", 0),
        ],
    )
    db.executemany(
        "INSERT INTO adlist_by_group VALUES (?, ?)", [(1, 0), (1, 1), (2, 1), (3, 0), (3, 1), (5, 0), (5, 1)]
    )
    db.executemany(
        "INSERT INTO domainlist (id, type, domain, enabled, comment) VALUES (?, ?, ?, ?, ?)",
        [
            (1, 0, "cdn.example.org", 1, "breaks the shop"),
            (2, 1, "tracker.example.com", 1, ""),
            (3, 2, r"(\.|^)allowed\.example$", 1, "and below"),
            (4, 3, r"^ads?[0-9]*\.", 1, "ad servers"),
            (5, 3, r"^x\.example$;querytype=AAAA", 1, ""),
            (6, 2, r"^weird.*allow$", 1, ""),
            (7, 1, "com", 1, "a whole TLD"),
            (8, 3, r".*", 1, "everything"),
            (9, 1, "games.example.com", 1, "kids only"),
        ],
    )
    db.executemany(
        "INSERT INTO domainlist_by_group VALUES (?, ?)",
        [(i, g) for i in (1, 2, 3, 4, 5, 6, 7, 8) for g in (0, 1)] + [(9, 1)],
    )
    db.executemany(
        "INSERT INTO client (id, ip, comment) VALUES (?, ?, ?)",
        [
            (1, "192.168.1.50", "tablet"),
            (2, "AA-BB-CC-DD-EE-FF", "console"),
            (3, "192.168.2.0/24", ""),
            (4, ":eth1", ""),
        ],
    )
    db.executemany("INSERT INTO client_by_group VALUES (?, ?)", [(1, 1), (2, 1), (3, 0), (4, 0)])
    db.commit()
    db.close()
    return path


def make_teleporter(tmp_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A zip laid out as Pi-hole v6's Teleporter writes it."""
    gravity = make_gravity(tmp_path / "gravity-src.db")
    archive = tmp_path / "pi-hole_teleporter.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(gravity, "etc/pihole/gravity.db")
        zf.writestr("etc/pihole/pihole.toml", PIHOLE_TOML)
        zf.writestr("etc/hosts", "127.0.0.1 localhost\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


def run(*args) -> str:
    out = StringIO()
    call_command("importfrom", *[str(a) for a in args], stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "lists": Blocklist.objects.exclude(name=MANUAL_LIST).count(),
        "blocked": BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).count(),
        "allowed": AllowedDomain.objects.count(),
        "rules": BlockRule.objects.count(),
        "records": LocalRecord.objects.count(),
        "clients": Client.objects.count(),
        "groups": ClientGroup.objects.count(),
    }


@pytest.fixture(autouse=True)
def no_lists():
    # Migration 0003's default subscriptions would mix with the imported ones.
    Blocklist.objects.all().delete()


# --- Pi-hole ---------------------------------------------------------------------------------


def test_it_imports_a_teleporter_zip(tmp_path):
    out = run("pihole", make_teleporter(tmp_path))

    lists = {b.url: b for b in Blocklist.objects.exclude(name=MANUAL_LIST)}
    assert set(lists) == {
        "https://lists.example.net/hosts.txt",
        "https://lists.example.net/kids.txt",
        "https://lists.example.net/off.txt",
    }
    assert lists["https://lists.example.net/hosts.txt"].name == "Steven's list"
    assert lists["https://lists.example.net/off.txt"].enabled is False
    assert {(a.domain, a.include_subdomains) for a in AllowedDomain.objects.all()} == {
        ("cdn.example.org", False),
        ("allowed.example", True),
    }
    assert set(BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).values_list("domain", flat=True)) == {
        "tracker.example.com",
        "games.example.com",
    }
    assert list(BlockRule.objects.values_list("kind", "pattern")) == [("regex", r"^ads?[0-9]*\.")]
    assert set(LocalRecord.objects.values_list("name", "type", "value", "ttl")) == {
        ("nas.lan", "A", "192.168.1.10", 300),
        ("nas", "A", "192.168.1.10", 300),
        ("printer.lan", "AAAA", "fd00::10", 300),
        ("media.lan", "CNAME", "nas.lan", 300),
        ("files.lan", "CNAME", "nas.lan", 600),
    }
    clients = {c.identifier: c for c in Client.objects.select_related("group")}
    assert set(clients) == {"192.168.1.50", "aa:bb:cc:dd:ee:ff", "192.168.2.0/24"}
    assert clients["192.168.1.50"].group.name == "Kids"
    assert clients["192.168.2.0/24"].group.is_default
    assert "GLORYHOLE_UPSTREAMS=9.9.9.9,149.112.112.112:5353,2620:fe::fe" in out
    assert "lan -> 192.168.1.1" in out
    assert "1.168.192.in-addr.arpa -> 192.168.1.1" in out
    assert "skipped 1: allowlist subscription" in out
    assert "skipped 1: list that is not an http(s) URL" in out
    assert "skipped 1: regex allow rule" in out
    assert "skipped 1: regex rule with Pi-hole's own ;querytype" in out
    assert "skipped 1: client known by a host name or an interface" in out


def test_it_keeps_pihole_group_memberships(tmp_path):
    run("pihole", make_teleporter(tmp_path))

    kids = ClientGroup.objects.get(name="Kids")
    assert kids.description == "the children's tablets"
    # In every Pi-hole group: no groups here, which means every group.
    assert not Blocklist.objects.get(url="https://lists.example.net/hosts.txt").groups.exists()
    assert list(Blocklist.objects.get(url="https://lists.example.net/kids.txt").groups.all()) == [kids]
    assert not AllowedDomain.objects.get(domain="cdn.example.org").groups.exists()


def test_it_reads_a_bare_gravity_db_and_pihole_toml(tmp_path):
    toml = tmp_path / "pihole.toml"
    toml.write_text(PIHOLE_TOML)
    run("pihole", make_gravity(tmp_path / "gravity.db"), toml)

    assert counts()["lists"] == 3
    assert LocalRecord.objects.filter(name="media.lan", type="CNAME").exists()


def test_it_reads_the_v5_files(tmp_path):
    setup = tmp_path / "setupVars.conf"
    setup.write_text(
        "PIHOLE_INTERFACE=eth0\nPIHOLE_DNS_1=1.0.0.1\nPIHOLE_DNS_2=8.8.4.4#5300\nREV_SERVER=true\n"
        "REV_SERVER_CIDR=10.0.0.0/8\nREV_SERVER_TARGET=10.0.0.1\nREV_SERVER_DOMAIN=home\n"
    )
    custom = tmp_path / "custom.list"
    custom.write_text("10.0.0.5 router.home\nnot-an-ip name\n")
    cname = tmp_path / "05-pihole-custom-cname.conf"
    cname.write_text("cname=gw.home,router.home\n")

    out = run("pihole", setup, custom, cname)

    assert "GLORYHOLE_UPSTREAMS=1.0.0.1,8.8.4.4:5300" in out
    assert "home -> 10.0.0.1" in out and "10.in-addr.arpa -> 10.0.0.1" in out
    assert set(LocalRecord.objects.values_list("name", "type", "value")) == {
        ("router.home", "A", "10.0.0.5"),
        ("gw.home", "CNAME", "router.home"),
    }
    assert "skipped 1: local record line that does not start with an IP address" in out


def test_the_guard_rails_skip_a_rule_for_a_whole_tld(tmp_path):
    out = run("pihole", make_teleporter(tmp_path))

    assert not BlockedDomain.objects.filter(domain="com").exists()
    assert not BlockRule.objects.filter(pattern=".*").exists()
    assert "skipped 1: block entry for a whole top-level domain or public suffix (guard rails)" in out
    assert "skipped 1: regex rule that would block a whole top-level domain or more (guard rails)" in out


def test_a_dry_run_creates_nothing_and_prints_the_plan(tmp_path):
    before, generation = counts(), config_generation_current()

    out = run("pihole", make_teleporter(tmp_path), "--dry-run")

    assert counts() == before
    assert config_generation_current() == generation
    assert "Dry run: nothing written" in out
    assert "+ list         Steven's list: https://lists.example.net/hosts.txt" in out
    assert "+ block        tracker.example.com and below" in out
    assert "+ group        Kids" in out
    assert "+ client       tablet (192.168.1.50) in group Kids" in out
    assert "Dry run: 19 to create, 0 unchanged, 7 skipped" in out


def test_a_second_import_creates_nothing(tmp_path):
    archive = make_teleporter(tmp_path)
    run("pihole", archive)
    after_first = counts()

    out = run("pihole", archive)

    assert counts() == after_first
    assert "0 created, 19 unchanged, 7 skipped" in out
    assert "+ " not in out


def test_a_real_import_bumps_the_config_generation_once(tmp_path):
    archive = make_teleporter(tmp_path)
    generation = config_generation_current()
    run("pihole", archive)
    assert config_generation_current() == generation + 1

    run("pihole", archive)  # nothing new: the engines have nothing to reload
    assert config_generation_current() == generation + 1


def test_a_failure_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(common._Applier, "apply_records", broken)
    before = counts()

    with pytest.raises(RuntimeError):
        run("pihole", make_teleporter(tmp_path))

    assert counts() == before


def test_an_unsupported_record_type_is_counted():
    plan = Plan(source="test")
    plan.records.append(Record("x.example", "HINFO", "pc linux"))
    outcome = plan_apply(plan)
    assert outcome.skipped == {"HINFO local record (not a type this version serves)": 1}


def test_forwarding_rules_become_rules_one_per_domain_and_a_users_own_rule_stays():
    ForwardingRule.objects.create(domain="corp.example", upstreams="10.9.9.9")
    plan = Plan(source="test")
    plan.forwards += [Forward("lan", "192.168.1.1"), Forward("lan", "192.168.1.2"), Forward("corp.example", "10.1.1.1")]
    plan.forwards.append(Forward("home.arpa", "not an upstream:99999"))

    outcome = plan_apply(plan)

    rules = dict(ForwardingRule.objects.values_list("domain", "upstreams"))
    assert rules == {"lan": "192.168.1.1:53, 192.168.1.2:53", "corp.example": "10.9.9.9"}
    assert outcome.skipped["forwarding rule for a domain that has one with other upstreams"] == 1
    assert sum(n for reason, n in outcome.skipped.items() if reason.startswith("invalid forwarding rule")) == 1
    assert plan_apply(plan).created == {}  # idempotent


# --- Hostile and broken Pi-hole files -----------------------------------------------------------


def test_a_path_traversal_member_is_never_read(tmp_path):
    evil = '[dns]\nupstreams = ["6.6.6.6"]\n'
    archive = make_teleporter(tmp_path, {"../../etc/pihole/pihole.toml": evil, "/abs/pihole.toml": evil})

    out = run("pihole", archive)

    assert "6.6.6.6" not in out
    assert not (tmp_path.parent / "etc").exists()


def test_a_member_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("dnsengine.importers.pihole.MAX_TEXT_BYTES", 64 * 1024)
    bomb = b"# " + b"x" * (1024 * 1024)  # 1 MiB of one byte compresses to about 1 kB
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("etc/pihole/pihole.toml", bomb)
    assert archive.stat().st_size < 16 * 1024

    with pytest.raises(CommandError, match=r"pihole\.toml in bomb\.zip would be larger than"):
        run("pihole", archive)
    assert counts()["records"] == 0


def test_a_member_that_lies_about_its_size_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("dnsengine.importers.pihole.MAX_TEXT_BYTES", 64 * 1024)
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("etc/pihole/pihole.toml", b"#" * (1024 * 1024))
    data = bytearray(archive.read_bytes())
    # Patch the uncompressed size in the central directory (offset 24 of its entry) to 10 bytes.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))

    with pytest.raises(CommandError, match=r"larger than it says|cannot read"):
        run("pihole", archive)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("pihole.toml", b"[dns\nupstreams = 1", "pihole.toml is not valid TOML"),
        ("gravity.db", b"SQLite format 3\x00" + b"\xff" * 200, "gravity.db"),
        ("teleporter.zip", b"PK\x03\x04 not really a zip", "not a readable zip archive"),
        ("backup.tar.gz", b"\x1f\x8b\x08\x00", "v5 Teleporter .tar.gz"),
        ("notes.txt", b"hello", "not a Pi-hole file"),
        ("pihole.toml", b"\xff\xfe\x00bad", "not UTF-8"),
    ],
)
def test_a_malformed_pihole_file_is_a_one_line_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message) as caught:
        run("pihole", path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("nothing imported:")


def test_a_database_that_is_not_gravity_is_refused(tmp_path):
    path = tmp_path / "gravity.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    with pytest.raises(CommandError, match="neither an adlist nor a domainlist table"):
        run("pihole", path)


@pytest.mark.integration
def test_manage_py_exits_1_without_a_traceback_on_a_broken_file(tmp_path):
    path = tmp_path / "AdGuardHome.yaml"
    path.write_text("dns: [unclosed\n")
    done = subprocess.run(
        [sys.executable, "manage.py", "importfrom", "adguardhome", str(path)],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "AdGuardHome.yaml is not valid YAML" in done.stderr


# --- AdGuard Home ---------------------------------------------------------------------------------

ADGUARD_YAML = """
http:
  address: 0.0.0.0:3000
dns:
  bind_hosts: [0.0.0.0]
  port: 53
  upstream_dns:
    - '# the main ones'
    - 9.9.9.9
    - udp://1.1.1.1:5353
    - https://dns.example.net/dns-query
    - '[/lan/home.arpa/]192.168.1.1'
    - '[/corp.example/]tls://10.1.1.1'
  upstream_dns_file: ""
filtering:
  rewrites:
    - domain: nas.lan
      answer: 192.168.1.10
    - domain: www.nas.lan
      answer: nas.lan
    - domain: v6.lan
      answer: fd00::1
    - domain: keep.example
      answer: A
filters:
  - enabled: true
    url: https://adguardteam.example/filter_1.txt
    name: AdGuard DNS filter
    id: 1
  - enabled: false
    url: https://lists.example.net/extra.txt
    name: Extra
    id: 2
whitelist_filters:
  - enabled: true
    url: https://lists.example.net/allow.txt
    name: allowed
    id: 3
user_rules:
  - '! my rules'
  - '||ads.example.org^'
  - '@@||shop.example.org^'
  - '@@|exact.example.org^'
  - /^track[0-9]+\\./
  - '@@/^ok/'
  - '||example.org^$client=192.168.1.5'
  - '||ads*.example.net^'
  - 0.0.0.0 hosts-style.example
  - '||com^'
  - example.org##.banner
  - '|https://example.org/ads/'
clients:
  persistent:
    - name: laptop
      ids: [192.168.1.20, 'aa:bb:cc:00:11:22', 10.9.0.0/16, my-client-id]
      tags: [device_laptop]
      use_global_settings: true
      filtering_enabled: true
schema_version: 29
"""


def write_yaml(tmp_path: Path, text: str = ADGUARD_YAML) -> Path:
    path = tmp_path / "AdGuardHome.yaml"
    path.write_text(text)
    return path


def test_it_imports_adguardhome_yaml(tmp_path):
    out = run("adguardhome", write_yaml(tmp_path))

    lists = {b.url: b.enabled for b in Blocklist.objects.exclude(name=MANUAL_LIST)}
    assert lists == {"https://adguardteam.example/filter_1.txt": True, "https://lists.example.net/extra.txt": False}
    assert Blocklist.objects.filter(name="AdGuard DNS filter").exists()
    assert set(BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST).values_list("domain", flat=True)) == {
        "ads.example.org",
        "hosts-style.example",
    }
    assert {(a.domain, a.include_subdomains) for a in AllowedDomain.objects.all()} == {
        ("shop.example.org", True),
        ("exact.example.org", False),
    }
    assert set(BlockRule.objects.values_list("kind", "pattern")) == {
        ("regex", r"^track[0-9]+\."),
        ("wildcard", "ads*.example.net"),
    }
    assert set(LocalRecord.objects.values_list("name", "type", "value")) == {
        ("nas.lan", "A", "192.168.1.10"),
        ("www.nas.lan", "CNAME", "nas.lan"),
        ("v6.lan", "AAAA", "fd00::1"),
    }
    assert {c.identifier for c in Client.objects.all()} == {"192.168.1.20", "aa:bb:cc:00:11:22", "10.9.0.0/16"}
    assert set(Client.objects.values_list("name", flat=True)) == {"laptop"}
    assert "GLORYHOLE_UPSTREAMS=9.9.9.9,1.1.1.1:5353" in out
    assert "upstream not converted: https://dns.example.net/dns-query" in out
    assert "lan -> 192.168.1.1" in out and "home.arpa -> 192.168.1.1" in out
    assert "skipped 1: allowlist subscription" in out
    assert "skipped 2: rule with $modifiers" not in out  # one modifier rule
    assert "skipped 1: rule with $modifiers" in out
    assert "skipped 1: regex allow rule" in out
    assert "skipped 1: block entry for a whole top-level domain or public suffix (guard rails)" in out
    assert "skipped 1: user rule this importer does not understand" in out
    assert "skipped 1: cosmetic rule" in out
    assert "skipped 1: rewrite that keeps the upstream's answer" in out
    assert "skipped 1: client known by a host name or an interface" in out


def test_an_adguard_import_is_idempotent_and_its_dry_run_writes_nothing(tmp_path):
    path = write_yaml(tmp_path)
    dry = run("adguardhome", path, "--dry-run")
    assert counts()["lists"] == 0 and counts()["records"] == 0
    assert "+ rule         wildcard ads*.example.net" in dry

    first = run("adguardhome", path)
    second = run("adguardhome", path)

    created = int(first.strip().splitlines()[-2].split()[0])
    assert created == 16  # 2 of them forwarding rules: lan and home.arpa to 192.168.1.1
    assert dict(ForwardingRule.objects.values_list("domain", "upstreams")) == {
        "lan": "192.168.1.1:53",
        "home.arpa": "192.168.1.1:53",
    }
    assert f"0 created, {created} unchanged" in second


def test_older_files_keep_their_rewrites_under_dns(tmp_path):
    run("adguardhome", write_yaml(tmp_path, "dns:\n  rewrites:\n    - domain: old.lan\n      answer: 10.0.0.2\n"))
    assert LocalRecord.objects.filter(name="old.lan", type="A", value="10.0.0.2").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dns: [unclosed\n", r"AdGuardHome.yaml is not valid YAML \(line 2\)"),
        ("- just\n- a list\n", "no top-level mapping"),
        ("title: a different program\n", "no dns, filters or user_rules"),
        ("a: &x [1, 2]\nuser_rules: *x\n", "aliases"),
        ("user_rules: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
)
def test_a_malformed_adguard_file_is_a_one_line_error(tmp_path, text, message):
    with pytest.raises(CommandError, match=message) as caught:
        run("adguardhome", write_yaml(tmp_path, text))
    assert "\n" not in str(caught.value)


def test_a_huge_adguard_file_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr("dnsengine.importers.adguard.read_limited", lambda p: common.read_limited(p, 1024))
    with pytest.raises(CommandError, match="larger than"):
        run("adguardhome", write_yaml(tmp_path, "user_rules:\n" + "  - '||a.example^'\n" * 200))


# --- A running engine serves what was imported -------------------------------------------------


@pytest.mark.integration
def test_a_running_engine_serves_the_imported_rules(engine, dns_client, upstream, tmp_path):
    Blocklist.objects.all().delete()
    path = write_yaml(
        tmp_path,
        "filtering:\n  rewrites:\n    - domain: nas.lan\n      answer: 192.168.1.10\n"
        "user_rules:\n  - '||ads.example.org^'\n  - /^track[0-9]+\\./\n",
    )
    run("adguardhome", path)
    engine_reload(engine)

    assert answers(dns_client.query("nas.lan")) == ["A 192.168.1.10"]
    assert answers(dns_client.query("x.ads.example.org")) == ["A 0.0.0.0"]
    assert answers(dns_client.query("track7.example.net")) == ["A 0.0.0.0"]
    assert upstream.received == 0
