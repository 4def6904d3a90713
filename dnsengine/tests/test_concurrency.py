"""A slow upstream must not hold up anything else, with a fixed number of threads."""

from __future__ import annotations

import dataclasses
import selectors
import socket
import threading
import time

import dns.flags
import dns.message
import dns.query
import pytest

from gloryhole_site.testing.dnsclient import Client, answers, rcode


@pytest.mark.integration
def test_five_hundred_slow_misses_are_all_answered_while_cached_names_stay_fast(make_engine, engine_config, upstream):
    engine = make_engine(dataclasses.replace(engine_config, upstream_timeout=2.0))
    dns_client = Client(engine.port)
    dns_client.query("hot.example.com")  # cached before the upstream turns slow
    upstream.behaviour.delay = 0.2
    threads_before = threading.active_count()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setblocking(False)
    ids = set()
    for i in range(500):
        message = dns.message.make_query(f"slow{i}.example.com", "A")
        ids.add(message.id)
        sock.sendto(message.to_wire(), ("127.0.0.1", engine.port))

    # While those 500 wait on the 200 ms upstream, a cached name is answered at once.
    fast = []
    # The most seen waiting upstream at once, sampled while the test works (on a busy
    # machine the engine may still be reading the 500 when the fast queries are done).
    in_flight_seen = 0
    for _ in range(20):
        started = time.perf_counter()
        assert answers(dns_client.query("hot.example.com", timeout=1)) == ["A 192.0.2.1"]
        fast.append(time.perf_counter() - started)
        in_flight_seen = max(in_flight_seen, engine.forwarder.inflight)

    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    answered = {}
    deadline = time.monotonic() + 10
    # len(ids), not 500: two of the 500 random IDs are usually the same (a birthday
    # collision), and waiting for 500 distinct ones ran into the 10 s deadline.
    while len(answered) < len(ids) and time.monotonic() < deadline:
        in_flight_seen = max(in_flight_seen, engine.forwarder.inflight)
        if sel.select(timeout=0.5):
            while True:
                try:
                    reply = dns.message.from_wire(sock.recv(65535))
                except BlockingIOError:
                    break
                answered[reply.id] = answers(reply)
    sock.close()

    assert set(answered) == ids  # every one answered (IDs are random, so a collision is harmless)
    assert all(a == ["A 192.0.2.1"] for a in answered.values())
    assert in_flight_seen > 100  # they really were waiting upstream at the same time
    # "A few milliseconds", with generous room for a loaded 2-core CI box.
    assert sorted(fast)[len(fast) // 2] < 0.05
    assert threading.active_count() == threads_before


def test_beyond_the_in_flight_limit_it_answers_servfail_and_counts(make_engine, engine_config, upstream):
    upstream.behaviour.delay = 0.3
    engine = make_engine(dataclasses.replace(engine_config, max_inflight=5, upstream_timeout=2.0))
    results = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        reply = Client(engine.port).query(f"limit{i}.example.com", timeout=3)
        with lock:
            results.append(rcode(reply))

    askers = [threading.Thread(target=ask, args=(i,)) for i in range(15)]
    for t in askers:
        t.start()
    for t in askers:
        t.join()
    assert results.count("SERVFAIL") == engine.stats.counters["upstream_overflow"]
    assert results.count("SERVFAIL") >= 5
    assert results.count("NOERROR") >= 5


def test_a_truncated_upstream_reply_is_retried_over_tcp(engine, dns_client, upstream):
    upstream.behaviour.mode = "truncate"
    reply = dns_client.query("big.example.com", tcp=True)
    assert answers(reply) == ["A 192.0.2.1"]
    assert upstream.received_tcp == 1
    assert engine.stats.counters["upstream_tcp_retries"] == 1


def test_a_client_without_edns_gets_tc_for_an_answer_over_512_bytes(engine, dns_client, upstream):
    upstream.behaviour.big_txt = 4  # four 200-byte strings: about 850 bytes
    small = dns_client.query("txt.example.com", "TXT")
    assert small.flags & dns.flags.TC
    assert small.answer == []
    full = dns_client.query("txt.example.com", "TXT", tcp=True)
    assert len(full.answer[0]) == 4


def test_a_client_with_a_large_edns_buffer_gets_the_whole_answer_and_an_opt_record(engine, dns_client, upstream):
    upstream.behaviour.big_txt = 4
    reply = dns_client.query("txt2.example.com", "TXT", use_edns=0, payload=1232)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 4
    assert reply.edns == 0 and reply.payload == 4096
    plain = dns_client.query("txt3.example.com", "A")
    assert plain.edns == -1  # no OPT for a dns_client that sent none


def test_cached_answers_count_down_their_ttl(make_engine, engine_config, upstream):
    engine = make_engine(engine_config)
    now = [1000.0]
    engine.resolver.clock = lambda: now[0]
    dns_client = Client(engine.port)
    assert dns_client.query("ttl.example.com").answer[0].ttl == 300
    now[0] += 100
    reply = dns_client.query("ttl.example.com")
    assert reply.answer[0].ttl == 200
    now[0] += 201
    dns_client.query("ttl.example.com")  # expired: asked upstream again
    assert upstream.queries.count(("ttl.example.com", "A")) == 2
