"""Local records over real sockets: every type, automatic PTR, wildcards, round-robin, the hosts file."""

from __future__ import annotations

import dataclasses
import logging
import os

import dns.rdatatype
import dns.reversename
import pytest

from dnsengine.models import LocalRecord
from dnsengine.runtime.local_hosts import LocalHostsFile
from gloryhole_site.testing.dnsclient import Client, answers, rcode
from gloryhole_site.testing.engine import engine_reload

pytestmark = pytest.mark.integration


def records(reply, rdtype: str) -> list:
    wanted = dns.rdatatype.from_text(rdtype)
    return [rdata for rrset in reply.answer if rrset.rdtype == wanted for rdata in rrset]


def add(name: str, rtype: str, value: str, ttl: int = 300) -> LocalRecord:
    record = LocalRecord(name=name, type=rtype, value=value, ttl=ttl)
    record.full_clean()
    record.save()
    return record


def test_it_answers_txt_mx_and_srv_records(engine, dns_client, upstream):
    add("info.lan", "TXT", '"v=spf1 -all" "caf\u00e9 \\"quoted\\""')
    add("plain.lan", "TXT", 'say "hi"')
    add("lan", "MX", "10 mail.lan")
    add("lan", "MX", "20 backup.lan")
    add("_sip._udp.lan", "SRV", "0 5 5060 sip.lan")
    engine_reload(engine)

    [txt] = records(dns_client.query("info.lan", "TXT"), "TXT")
    assert txt.strings == (b"v=spf1 -all", 'caf\u00e9 "quoted"'.encode())
    [plain] = records(dns_client.query("plain.lan", "TXT"), "TXT")
    assert plain.strings == (b'say "hi"',)
    mx = sorted((r.preference, r.exchange.to_text()) for r in records(dns_client.query("lan", "MX"), "MX"))
    assert mx == [(10, "mail.lan."), (20, "backup.lan.")]
    [srv] = records(dns_client.query("_sip._udp.lan", "SRV"), "SRV")
    assert (srv.priority, srv.weight, srv.port, srv.target.to_text()) == (0, 5, 5060, "sip.lan.")
    assert not [q for q in upstream.queries if q[0].endswith("lan")]


def test_a_local_address_gets_its_ptr_even_in_a_private_reverse_zone(engine, dns_client, upstream):
    add("nas.lan", "A", "192.168.1.10")
    add("nas.lan", "AAAA", "fd00::10")
    engine_reload(engine)

    v4 = dns_client.query(dns.reversename.from_address("192.168.1.10"), "PTR")
    assert rcode(v4) == "NOERROR" and answers(v4) == ["PTR nas.lan."]
    v6 = dns_client.query(dns.reversename.from_address("fd00::10"), "PTR")
    assert rcode(v6) == "NOERROR" and answers(v6) == ["PTR nas.lan."]
    # Another private address still gets the RFC 6303 NXDOMAIN, never forwarded.
    assert rcode(dns_client.query(dns.reversename.from_address("192.168.1.11"), "PTR")) == "NXDOMAIN"
    assert upstream.received == 0


def test_an_explicit_ptr_wins_over_the_generated_one(engine, dns_client):
    add("nas.lan", "A", "192.168.1.10")
    add("192.168.1.10", "PTR", "storage.lan")  # an address as the name: its reverse name
    engine_reload(engine)
    assert answers(dns_client.query("10.1.168.192.in-addr.arpa", "PTR")) == ["PTR storage.lan."]


def test_a_wildcard_answers_names_below_it_and_an_exact_name_wins(engine, dns_client, upstream):
    add("*.dev.lan", "A", "10.0.0.5")
    add("*.api.dev.lan", "A", "10.0.0.6")
    add("www.dev.lan", "A", "10.0.0.7")
    engine_reload(engine)

    assert answers(dns_client.query("foo.dev.lan")) == ["A 10.0.0.5"]
    assert answers(dns_client.query("a.b.dev.lan")) == ["A 10.0.0.5"]  # more than one label deep
    assert answers(dns_client.query("v1.api.dev.lan")) == ["A 10.0.0.6"]  # the nearest wildcard
    assert answers(dns_client.query("www.dev.lan")) == ["A 10.0.0.7"]  # the exact name
    nodata = dns_client.query("foo.dev.lan", "AAAA")
    assert rcode(nodata) == "NOERROR" and nodata.answer == []
    # The wildcard's parent itself is not covered: forwarded.
    assert answers(dns_client.query("dev.lan")) == ["A 192.0.2.1"]
    assert [q for q in upstream.queries if q[0].endswith("lan")] == [("dev.lan", "A")]


def test_several_addresses_rotate_from_query_to_query(engine, dns_client):
    for n in range(1, 4):
        add("web.lan", "A", f"10.0.1.{n}")
    add("single.lan", "A", "10.0.2.1")
    engine_reload(engine)

    # The engine's own watcher may apply the same reload a moment after engine_reload (the
    # turns start again): the last queries are checked, each address leads once in three.
    replies = [records(dns_client.query("web.lan"), "A") for _ in range(9)]
    firsts = [answer[0].address for answer in replies]
    assert len(set(firsts[-3:])) == 3, firsts
    assert all(sorted(a.address for a in answer) == ["10.0.1.1", "10.0.1.2", "10.0.1.3"] for answer in replies)
    over_tcp = [records(dns_client.query("web.lan", tcp=True), "A")[0].address for _ in range(3)]
    assert len(set(over_tcp)) == 3, over_tcp
    # A name with one address stays on the fast path: cached, then served from the rendered replies.
    for _ in range(3):
        assert answers(dns_client.query("single.lan")) == ["A 10.0.2.1"]
    assert any(hit[2] == "single.lan" for hit in engine.resolver._rendered.values())
    assert not any(hit[2] == "web.lan" for hit in engine.resolver._rendered.values())


# -- the hosts file ---------------------------------------------------------------------


@pytest.fixture
def hosts_engine(make_engine, engine_config, tmp_path):
    path = tmp_path / "hosts"
    path.write_text("192.168.5.1 router.lan gw.lan\n")
    engine = make_engine(dataclasses.replace(engine_config, local_hosts_file=str(path)))
    engine.hosts_path = path
    return engine


def rewrite(path, text: str) -> None:
    """Write `text` so its stamp (mtime_ns, size) surely changes."""
    before = os.stat(path).st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_the_hosts_file_is_served_with_ptr_and_follows_changes(hosts_engine, upstream, caplog):
    engine, path = hosts_engine, hosts_engine.hosts_path
    client = Client(engine.port)
    engine_reload(engine)
    assert answers(client.query("router.lan")) == ["A 192.168.5.1"]
    assert answers(client.query("gw.lan")) == ["A 192.168.5.1"]
    assert answers(client.query("1.5.168.192.in-addr.arpa", "PTR")) == ["PTR gw.lan.", "PTR router.lan."]

    generation = engine.watcher.generation
    caplog.set_level(logging.WARNING, logger="dnsengine.runtime.local_hosts")
    rewrite(path, "# a comment\n192.168.5.2 router.lan\nnot-an-address x.lan\n\nfd00::5 nas.lan # v6\n10.0.0.1\n")
    engine.watcher.load_now()
    assert answers(client.query("router.lan")) == ["A 192.168.5.2"]
    assert answers(client.query("nas.lan", "AAAA")) == ["AAAA fd00::5"]
    assert answers(client.query("gw.lan")) == ["A 192.0.2.1"]  # gone from the file: forwarded
    assert engine.watcher.generation == generation  # no database reload
    assert engine.watcher.local_hosts.bad_lines == (3, 6)
    assert [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()] == [
        f"GLORYHOLE_LOCAL_HOSTS_FILE {path}: 2 malformed lines skipped: 3, 6"
    ]

    path.unlink()
    engine.watcher.load_now()
    assert answers(client.query("router.lan")) == ["A 192.0.2.1"]


def test_a_database_record_wins_over_the_hosts_file(hosts_engine):
    engine = hosts_engine
    add("router.lan", "A", "192.168.5.254")
    engine_reload(engine)
    client = Client(engine.port)
    assert answers(client.query("router.lan")) == ["A 192.168.5.254"]
    assert answers(client.query("gw.lan")) == ["A 192.168.5.1"]  # the file's other name still served


def test_a_hosts_file_past_its_bound_is_not_read(tmp_path, caplog):
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a.lan\n10.0.0.2 b.lan\n10.0.0.3 c.lan\n")
    assert len(LocalHostsFile(str(path), max_entries=2).read_if_changed()) == 2
    reader = LocalHostsFile(str(path), max_bytes=10)
    with caplog.at_level(logging.WARNING, logger="dnsengine.runtime.local_hosts"):
        assert reader.read_if_changed() is None
    assert "more than the 10 read at most" in caplog.text
    reader = LocalHostsFile(str(path))
    assert reader.read_if_changed() is not None
    assert reader.read_if_changed() is None  # unchanged: one stat()
