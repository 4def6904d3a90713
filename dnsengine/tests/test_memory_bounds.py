"""Hostile packets must not grow the engine's memory: padded queries, big EDNS options."""

from __future__ import annotations

import gc
import socket
import struct
import time

import dns.edns
import dns.message
import pytest

from dnsengine.core.resolver import MAX_RENDERED_QUERY, Exchange
from gloryhole_site.testing.dnsclient import rcode


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_queries_padded_with_junk_get_formerr_and_leave_no_memory_behind(engine):
    query = dns.message.make_query("localhost", "A")
    before = rss_bytes()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(5)
        for i in range(2000):
            query.id = i
            sock.sendto(query.to_wire() + bytes([i % 256]) * 60_000, ("127.0.0.1", engine.port))
            reply = dns.message.from_wire(sock.recv(65535))
            assert reply.id == i and rcode(reply) == "FORMERR"

    assert engine.resolver._rendered == {}
    assert engine.stats.counters["packets_malformed"] == 2000
    # 2,000 packets of 60 KB kept as keys would be 120 MB.
    assert rss_bytes() - before < 40 << 20


def test_a_well_formed_query_with_a_large_edns_option_is_answered_but_not_remembered(engine):
    padding = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 3000)
    query = dns.message.make_query("localhost", "A", use_edns=0, payload=4096, options=[padding])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for i in range(3):
            query.id = i
            sock.sendto(query.to_wire(), ("127.0.0.1", engine.port))
            reply = dns.message.from_wire(sock.recv(65535))
            assert reply.id == i and rcode(reply) == "NOERROR"
    small = dns.message.make_query("localhost", "A", use_edns=0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(small.to_wire(), ("127.0.0.1", engine.port))
        assert rcode(dns.message.from_wire(sock.recv(65535))) == "NOERROR"

    # The I/O thread remembers a rendered reply after sending it: wait for the small one's.
    deadline = time.monotonic() + 5
    while not engine.resolver._rendered and time.monotonic() < deadline:
        time.sleep(0.01)

    assert len(query.to_wire()) > MAX_RENDERED_QUERY
    assert [len(key) + 2 for key in engine.resolver._rendered] == [len(small.to_wire())]


def test_the_rendered_replies_stay_within_their_byte_budget(engine):
    resolver = engine.resolver
    resolver.rendered_max_bytes = 20_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for i in range(300):
            sock.sendto(dns.message.make_query(f"h{i}.localhost", "A").to_wire(), ("127.0.0.1", engine.port))
            sock.recv(65535)

    assert 0 < resolver._rendered_bytes <= 20_000
    assert resolver._rendered_bytes == sum(len(k) + 2 + len(v[0]) + 2 + 150 for k, v in resolver._rendered.items())


@pytest.mark.integration
def test_the_reply_cache_is_bounded_by_the_configured_bytes(make_engine, engine_config, upstream):
    import dataclasses

    upstream.behaviour.big_txt = 20  # ~4 KB answers
    engine = make_engine(dataclasses.replace(engine_config, cache_max_bytes=1 << 20))
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as conn:
        for i in range(400):
            wire = dns.message.make_query(f"t{i}.example.com", "TXT").to_wire()
            conn.sendall(struct.pack("!H", len(wire)) + wire)
            length = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
            conn.recv(length, socket.MSG_WAITALL)

    assert engine.cache.bytes <= 1 << 20
    assert engine.cache.evictions > 0


def test_forwarded_queries_with_large_edns_padding_are_not_kept_while_in_flight(engine, upstream):
    upstream.behaviour.mode = "silent"  # every query stays in flight until it times out
    padding = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 60_000)
    count = 50
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        for i in range(count):
            query = dns.message.make_query(f"padded{i}.example.com", "A", use_edns=0, payload=4096, options=[padding])
            sock.sendto(query.to_wire(max_size=65535), ("127.0.0.1", engine.port))
        deadline = time.monotonic() + 3
        while engine.forwarder.inflight < count:
            assert time.monotonic() < deadline, f"{engine.forwarder.inflight} of {count} in flight"
            time.sleep(0.01)

    held = [ex for ex in gc.get_objects() if isinstance(ex, Exchange) and ex.query.name.startswith("padded")]
    assert len(held) == count
    # 60 KB each would be 3 MB here, 128 MB at the in-flight limit.
    assert max(len(ex.packet) for ex in held) <= MAX_RENDERED_QUERY
