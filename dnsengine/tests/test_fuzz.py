"""Hostile packets: the engine answers with an error code or drops, and keeps serving."""

from __future__ import annotations

import random
import socket
import struct

import dns.message
import dns.opcode
import dns.query
import dns.rcode
import pytest

from gloryhole_site.testing.dnsclient import answers, rcode

SEED = 20261127


def _valid_queries() -> list[bytes]:
    queries = []
    for name, rdtype in [("example.com", "A"), ("www.example.org", "AAAA"), ("mail.example.net", "MX")]:
        queries.append(dns.message.make_query(name, rdtype).to_wire())
        queries.append(dns.message.make_query(name, rdtype, use_edns=0, payload=1232, want_dnssec=True).to_wire())
    return queries


def _mutations(rng: random.Random, count: int) -> list[bytes]:
    seeds = _valid_queries()
    packets = []
    for i in range(count):
        kind = i % 6
        base = bytearray(rng.choice(seeds))
        if kind == 0:  # pure noise of any length
            packet = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600)))
        elif kind == 1:  # flipped bytes
            for _ in range(rng.randint(1, 6)):
                base[rng.randrange(len(base))] = rng.getrandbits(8)
            packet = bytes(base)
        elif kind == 2:  # truncated anywhere
            packet = bytes(base[: rng.randrange(len(base))])
        elif kind == 3:  # lying counts in the header
            struct.pack_into("!HHHH", base, 4, *(rng.getrandbits(16) for _ in range(4)))
            packet = bytes(base)
        elif kind == 4:  # compression-pointer loop where the question name starts
            base[12:14] = b"\xc0\x0c"
            packet = bytes(base)
        else:  # random flags: QR set, other opcodes, reserved bits
            struct.pack_into("!H", base, 2, rng.getrandbits(16))
            packet = bytes(base)
        packets.append(packet)
    return packets


@pytest.mark.integration
def test_it_survives_ten_thousand_hostile_packets_over_udp_and_tcp(engine, dns_client):
    rng = random.Random(SEED)
    udp_packets = _mutations(rng, 8000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    replies = 0
    for i, packet in enumerate(udp_packets):
        sock.sendto(packet, ("127.0.0.1", engine.port))
        if i % 50 == 0:
            # Drain what came back so our own receive buffer does not fill.
            while True:
                try:
                    sock.recv(65535)
                    replies += 1
                except BlockingIOError:
                    break
    sock.close()

    tcp_packets = _mutations(rng, 2000)
    for start in range(0, len(tcp_packets), 100):
        with socket.create_connection(("127.0.0.1", engine.port), timeout=3) as conn:
            chunk = tcp_packets[start : start + 100]
            stream = b"".join(struct.pack("!H", len(p)) + p for p in chunk)
            if start % 300 == 0:
                # A length prefix that promises far more than ever arrives.
                stream += struct.pack("!H", 65000) + b"\x00" * 10
            try:
                conn.sendall(stream)
            except OSError:
                pass  # the engine may close on a bad frame; that is allowed

    assert replies > 0  # errors were answered, not just swallowed
    assert answers(dns_client.query("still-alive.example.com")) == ["A 192.0.2.1"]
    assert answers(dns_client.query("still-alive.example.com", tcp=True)) == ["A 192.0.2.1"]
    counters = engine.stats.counters
    assert counters.get("packets_malformed", 0) + counters.get("packets_dropped", 0) > 1000


def test_it_answers_formerr_for_a_question_it_cannot_read(engine):
    query = bytearray(dns.message.make_query("example.com", "A").to_wire())
    query[12:14] = b"\xc0\x0c"  # the name points at itself
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(bytes(query), ("127.0.0.1", engine.port))
        reply = dns.message.from_wire(sock.recv(65535))
    assert rcode(reply) == "FORMERR"
    assert reply.id == struct.unpack("!H", query[:2])[0]


def test_it_answers_notimp_for_other_opcodes(engine):
    query = dns.message.make_query("example.com", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query.to_wire(), ("127.0.0.1", engine.port))
        reply = dns.message.from_wire(sock.recv(65535))
    assert rcode(reply) == "NOTIMP"


def test_it_drops_packets_that_are_responses(engine):
    response = dns.message.make_response(dns.message.make_query("example.com", "A"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.sendto(response.to_wire(), ("127.0.0.1", engine.port))
        try:
            sock.recv(65535)
            got_reply = True
        except TimeoutError:
            got_reply = False
    assert not got_reply
    assert engine.stats.counters.get("packets_dropped") == 1


def test_it_answers_badvers_for_an_unknown_edns_version(engine, dns_client):
    reply = dns_client.query("example.com", use_edns=1)
    assert reply.rcode() == dns.rcode.BADVERS


@pytest.mark.integration
def test_it_closes_a_tcp_connection_that_never_completes_its_message(engine):
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as conn:
        conn.sendall(struct.pack("!H", 300) + b"\x00" * 20)  # 280 bytes never come
        conn.settimeout(engine.config.tcp_idle_timeout + 3)
        assert conn.recv(10) == b""  # closed by the engine
    assert engine.stats.counters.get("tcp_idle_closed") == 1
