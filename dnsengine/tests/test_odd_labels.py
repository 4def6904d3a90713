"""Names whose labels hold any bytes are decided by the same rules as every other name.

A label on the wire is any 0-63 bytes: '=', '+', a space, a NUL, UTF-8, a dot.
Each such name under a blocked domain must be blocked (no tunnelling past a
list), allow rules, wildcards, regex rules and the pause must treat it as they
treat plain names, and the reply must carry the client's own question bytes.
"""

from __future__ import annotations

import socket
import struct

import dns.message
import pytest

from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, BlockRule
from dnsengine.services import config_generation_bump
from dnsengine.services.pause import blocking_pause
from gloryhole_site.testing.dnsclient import answers, rcode
from gloryhole_site.testing.engine import engine_reload


def wire_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def ask(port: int, qname: bytes, qtype: int = 1, *, qid: int = 0x4242) -> tuple[dns.message.Message, bytes]:
    """Send a hand-made query for the wire name `qname`; the reply and its raw question section."""
    question = qname + struct.pack("!HH", qtype, 1)
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(packet, ("127.0.0.1", port))
        data = sock.recv(65535)
    assert data[:2] == packet[:2]
    return dns.message.from_wire(data), data[12 : 12 + len(question)]


def block(*domains: str) -> None:
    blocklist, _ = Blocklist.objects.get_or_create(name="ads")
    BlockedDomain.objects.bulk_create([BlockedDomain(blocklist=blocklist, domain=d) for d in domains])
    config_generation_bump()


@pytest.fixture
def blocking_engine(engine):
    block("doubleclick.net", "evil-ads.test", "tracker.example")
    engine_reload(engine)
    return engine


ODD_NAMES = [
    (b"x=1", b"doubleclick", b"net"),
    (b"aGVsbG8+d29ybGQ=", b"evil-ads", b"test"),
    (b"a b", b"tracker", b"example"),
    ("é".encode(), b"doubleclick", b"net"),
    (b"a\x00b", b"doubleclick", b"net"),
    (b"a.b", b"doubleclick", b"net"),  # a dot inside a label
    (b"a\\b", b"doubleclick", b"net"),
    (b"x" * 63, b"y" * 63, b"doubleclick", b"net"),
    (b"DOUBLECLICK", b"NET"),
    (b"\xff\xfe", b"DoubleClick", b"NeT"),
]


@pytest.mark.parametrize("labels", ODD_NAMES, ids=repr)
def test_odd_labels_under_a_blocked_domain_are_blocked(blocking_engine, upstream, labels):
    qname = wire_name(*labels)

    reply, question = ask(blocking_engine.port, qname)

    assert answers(reply) == ["A 0.0.0.0"]
    assert question == qname + b"\x00\x01\x00\x01"  # the client's own bytes and case come back
    assert upstream.received == 0


@pytest.mark.integration
@pytest.mark.parametrize("byte", range(256))
def test_every_byte_value_in_a_label_is_blocked_under_a_blocked_domain(blocking_engine, upstream, byte):
    qname = wire_name(bytes([byte]), b"doubleclick", b"net")

    reply, question = ask(blocking_engine.port, qname)

    assert answers(reply) == ["A 0.0.0.0"]
    assert question[:-4] == qname


def test_a_255_byte_name_under_a_blocked_domain_is_blocked(blocking_engine, upstream):
    labels = [bytes([i]) * 63 for i in (1, 0x7F, 0xC0)] + [b"." * 45, b"doubleclick", b"net"]
    qname = wire_name(*labels)
    assert len(qname) == 255

    reply, question = ask(blocking_engine.port, qname)

    assert answers(reply) == ["A 0.0.0.0"]
    assert question[:-4] == qname


def test_odd_names_elsewhere_are_forwarded_with_their_own_bytes(blocking_engine, upstream):
    reply, question = ask(blocking_engine.port, wire_name(b"x=1", b"example", b"com"))

    assert answers(reply) == ["A 192.0.2.1"]
    assert question[:-4] == wire_name(b"x=1", b"example", b"com")


def test_an_allow_rule_covers_odd_names_below_it(engine, upstream):
    block("doubleclick.net")
    AllowedDomain.objects.create(domain="ok.doubleclick.net", include_subdomains=True)
    config_generation_bump()
    engine_reload(engine)

    assert answers(ask(engine.port, wire_name(b"a b", b"ok", b"doubleclick", b"net"))[0]) == ["A 192.0.2.1"]
    assert answers(ask(engine.port, wire_name(b"a b", b"no", b"doubleclick", b"net"))[0]) == ["A 0.0.0.0"]


def test_wildcard_and_regex_rules_match_the_escaped_text_of_odd_names(engine, upstream):
    BlockRule.objects.create(kind="wildcard", pattern="*.tunnel.example")
    # Regex rules see the presentation form: a space is \032, a NUL \000, é \195\169.
    BlockRule.objects.create(kind="regex", pattern=r"\\032secret\.")
    config_generation_bump()
    engine_reload(engine)

    assert answers(ask(engine.port, wire_name(b"a\x00b", b"tunnel", b"example"))[0]) == ["A 0.0.0.0"]
    assert answers(ask(engine.port, wire_name(b"a secret", b"example", b"org"))[0]) == ["A 0.0.0.0"]
    assert answers(ask(engine.port, wire_name(b"a_secret", b"example", b"org"))[0]) == ["A 192.0.2.1"]


def test_a_pause_lets_odd_names_through_like_any_other(blocking_engine, upstream):
    blocking_pause(5, by="test")
    engine_reload(blocking_engine)

    reply, _ = ask(blocking_engine.port, wire_name(b"x=1", b"doubleclick", b"net"))

    assert answers(reply) == ["A 192.0.2.1"]


def test_an_odd_label_never_passes_for_another_name(blocking_engine, upstream):
    # "doubleclick.net" as ONE label holding a dot, under a public name, is not doubleclick.net.
    reply, _ = ask(blocking_engine.port, wire_name(b"doubleclick.net", b"example", b"com"))

    assert rcode(reply) == "NOERROR" and answers(reply) == ["A 192.0.2.1"]


def test_the_longest_escaped_name_is_logged_and_rolled_up_whole(make_engine, engine_config):
    from querylog.logger.pool import QueryLogger
    from querylog.models import DomainRollup, QueryLog

    block("doubleclick.net")
    query_logger = QueryLogger(1000, 1, 100, 0.05, "test-engine").start()
    engine = make_engine(engine_config, query_logger=query_logger)
    # A 255-byte name whose first four labels (234 bytes) are all escaped: 952 characters of text.
    qname = wire_name(b"\x00" * 63, b"\xff" * 63, b"\x01" * 63, b"\x7f" * 45, b"doubleclick", b"net")
    assert len(qname) == 255

    reply, _ = ask(engine.port, qname)
    engine.stop()
    query_logger.close(timeout=10)

    assert answers(reply) == ["A 0.0.0.0"]
    (row,) = QueryLog.objects.all()
    assert len(row.domain) == 4 * (63 * 3 + 45) + 3 + len(".doubleclick.net")
    assert row.domain.endswith("\\127.doubleclick.net") and row.status == "blocked"
    assert DomainRollup.objects.get().domain == row.domain
