"""Names that never leave the box (RFC 6761, RFC 6303, single labels): the classifier and the engine."""

from __future__ import annotations

import dataclasses

import pytest

from dnsengine.core.special import INVALID, LOCALHOST, PRIVATE_REVERSE, SINGLE_LABEL, special_use
from dnsengine.models import LocalRecord
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import Client, answers, rcode
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.querylog import RecordingSink


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("localhost", LOCALHOST),
        ("a.b.localhost", LOCALHOST),
        ("invalid", INVALID),
        ("x.invalid", INVALID),
        ("nas", SINGLE_LABEL),
        ("1.0.0.10.in-addr.arpa", PRIVATE_REVERSE),
        ("10.in-addr.arpa", PRIVATE_REVERSE),
        ("4.3.16.172.in-addr.arpa", PRIVATE_REVERSE),
        ("4.3.31.172.in-addr.arpa", PRIVATE_REVERSE),
        ("2.1.168.192.in-addr.arpa", PRIVATE_REVERSE),
        ("1.0.0.127.in-addr.arpa", PRIVATE_REVERSE),
        ("9.9.254.169.in-addr.arpa", PRIVATE_REVERSE),
        ("1.2.64.100.in-addr.arpa", PRIVATE_REVERSE),
        ("1." + "0." * 31 + "ip6.arpa", PRIVATE_REVERSE),
        ("1.2.3.4.0.0.d.f.ip6.arpa", PRIVATE_REVERSE),
        ("1.0.0.0.8.e.f.ip6.arpa", PRIVATE_REVERSE),
        ("1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", PRIVATE_REVERSE),
        # Public ones, and look-alikes of private ones, go upstream.
        ("example.com", None),
        ("", None),
        ("localhost.example.com", None),
        ("invalid.example.com", None),
        ("4.3.32.172.in-addr.arpa", None),
        ("4.3.15.172.in-addr.arpa", None),
        ("8.8.8.8.in-addr.arpa", None),
        ("1.2.128.100.in-addr.arpa", None),
        ("110.in-addr.arpa", None),
        ("1.0.0.0.8.4.8.4.0.6.8.4.1.0.0.2.ip6.arpa", None),
        ("arpa", SINGLE_LABEL),  # asked as an A record
        ("in-addr.arpa", None),
        ("home.arpa", None),
    ],
)
def test_it_knows_which_names_never_leave_the_box(name, kind):
    assert special_use(name) == kind


@pytest.mark.parametrize(("name", "qtype"), [("com", 2), ("arpa", 48), ("nas", 16)])
def test_it_keeps_only_address_lookups_of_single_labels_at_home(name, qtype):
    assert special_use(name, qtype) is None
    assert special_use(name, 28) == SINGLE_LABEL


def test_settings_can_forward_single_labels_and_private_reverse_lookups():
    assert special_use("nas", forward_single_label=True) is None
    assert special_use("1.0.0.10.in-addr.arpa", forward_private_reverse=True) is None
    assert special_use("localhost", forward_single_label=True) == LOCALHOST


@pytest.fixture
def logged_engine(make_engine, engine_config):
    sink = RecordingSink()
    return make_engine(engine_config, query_logger=sink), sink


def test_localhost_is_loopback_and_never_asked_upstream(logged_engine, upstream):
    engine, sink = logged_engine
    client = Client(engine.port)

    assert answers(client.query("localhost")) == ["A 127.0.0.1"]
    assert answers(client.query("LocalHost", "AAAA")) == ["AAAA ::1"]
    assert answers(client.query("printer.localhost")) == ["A 127.0.0.1"]
    mx = client.query("localhost", "MX")
    assert rcode(mx) == "NOERROR" and mx.answer == [] and mx.authority
    assert answers(client.query("localhost", tcp=True)) == ["A 127.0.0.1"]

    assert upstream.received == 0
    assert {(e.domain, e.status, e.rule) for e in sink.wait_for(5)} == {
        ("localhost", "local", "special:localhost"),
        ("printer.localhost", "local", "special:localhost"),
    }
    assert engine.stats.queries_by_status["local"] == 5


@pytest.mark.parametrize(
    "name", ["invalid", "x.invalid", "1.0.0.10.in-addr.arpa", "7.1.168.192.in-addr.arpa", "nas", "wpad"]
)
def test_invalid_private_reverse_and_single_label_names_get_nxdomain_locally(logged_engine, upstream, name):
    engine, sink = logged_engine
    rdtype = "PTR" if name.endswith(".arpa") else "A"

    reply = Client(engine.port).query(name, rdtype)

    assert rcode(reply) == "NXDOMAIN" and reply.authority  # with an SOA, for negative caching
    assert upstream.received == 0
    (entry,) = sink.wait_for(1)
    assert entry.status == "local" and entry.rule.startswith("special:")


def test_public_reverse_lookups_and_dotted_names_still_go_upstream(engine, dns_client, upstream):
    dns_client.query("8.8.8.8.in-addr.arpa", "PTR")
    dns_client.query("example.com")

    assert ("8.8.8.8.in-addr.arpa", "PTR") in upstream.queries
    assert ("example.com", "A") in upstream.queries


def test_the_settings_forward_single_labels_and_private_reverse_lookups(make_engine, engine_config, upstream):
    config = dataclasses.replace(engine_config, forward_single_label=True, forward_private_reverse=True)
    client = Client(make_engine(config).port)

    assert answers(client.query("nas")) == ["A 192.0.2.1"]
    client.query("1.0.0.10.in-addr.arpa", "PTR")
    assert ("1.0.0.10.in-addr.arpa", "PTR") in upstream.queries
    assert answers(client.query("localhost")) == ["A 127.0.0.1"]  # never forwarded, whatever the settings


def test_a_local_record_wins_over_the_single_label_rule(engine, dns_client, upstream):
    LocalRecord.objects.create(name="nas", type="A", value="192.168.1.10", ttl=60)
    config_generation_bump()
    engine_reload(engine)

    assert answers(dns_client.query("nas")) == ["A 192.168.1.10"]
    assert rcode(dns_client.query("printer")) == "NXDOMAIN"
    assert upstream.received == 0
