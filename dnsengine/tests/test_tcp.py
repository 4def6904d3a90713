"""TCP clients that misbehave, over real sockets: none of them may stop the engine or lock others out."""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
import time

import dns.message
import dns.query
import pytest

from dnsengine.core.server import MAX_TCP_PIPELINE
from gloryhole_site.testing.dnsclient import answers, rcode


def framed(name: str, rdtype: str = "A", qid: int = 0) -> bytes:
    message = dns.message.make_query(name, rdtype)
    message.id = qid
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


def read_message(sock: socket.socket) -> dns.message.Message:
    head = sock.recv(2, socket.MSG_WAITALL)
    assert len(head) == 2, "the engine closed the connection before answering"
    body = sock.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
    return dns.message.from_wire(body)


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a client that gives up does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def probe(port: int, *, tcp: bool, name: str = "localhost", rdtype: str = "A") -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(message, "127.0.0.1", port=port, timeout=2)
    return dns.query.udp(message, "127.0.0.1", port=port, timeout=2)


@pytest.mark.integration
def test_a_client_that_pipelines_and_resets_without_reading_stops_nothing(make_engine, engine_config, upstream):
    upstream.behaviour.big_txt = 250  # 50 KB answers: 400 of them are far more than the socket buffers hold
    engine = make_engine(engine_config)
    assert len(probe(engine.port, tcp=True, name="big.example.com", rdtype="TXT").answer[0]) == 250  # now cached
    upstream.behaviour.delay = 0.3  # the forwarded ones are still in flight when the client resets
    burst = b"".join(
        framed(f"n{i}.example.com", qid=i) if i % 5 == 0 else framed("big.example.com", "TXT", qid=i)
        for i in range(500)
    )
    for _ in range(3):
        hog = connect(engine.port)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and reads nothing
        hog.sendall(burst)
        time.sleep(0.2)
        reset(hog)

    deadline = time.monotonic() + 2.0
    probes = 0
    while time.monotonic() < deadline:  # the forwarded answers for the dead connections arrive meanwhile
        assert answers(probe(engine.port, tcp=False)) == ["A 127.0.0.1"]
        assert answers(probe(engine.port, tcp=True)) == ["A 127.0.0.1"]
        assert answers(probe(engine.port, tcp=False, name=f"after{probes}.example.com")) == ["A 192.0.2.1"]
        probes += 1
    assert probes >= 3

    stopper = threading.Thread(target=engine.stop)
    stopper.start()
    stopper.join(timeout=10)
    assert not stopper.is_alive(), "the engine did not stop"


@pytest.mark.integration
def test_a_half_closed_connection_gets_its_forwarded_answers(engine, upstream):
    upstream.behaviour.delay = 0.05  # the FIN is in before the answer
    for i in range(20):
        with connect(engine.port) as sock:
            sock.sendall(framed(f"half{i}.example.com", qid=i))
            sock.shutdown(socket.SHUT_WR)  # RFC 7766: the answer must still come

            reply = read_message(sock)

            assert reply.id == i and answers(reply) == ["A 192.0.2.1"]
            assert sock.recv(10) == b""  # then the engine closes: nothing more was asked


def test_a_half_closed_connection_gets_every_pipelined_answer_before_it_closes(engine, upstream):
    upstream.behaviour.delay = 0.2
    with connect(engine.port) as sock:
        sock.sendall(b"".join(framed(f"p{i}.example.com" if i % 2 else "localhost", qid=i) for i in range(10)))
        sock.shutdown(socket.SHUT_WR)

        ids = sorted(read_message(sock).id for _ in range(10))

        assert ids == list(range(10))
        assert sock.recv(10) == b""


def test_one_client_cannot_take_every_tcp_connection(make_engine, engine_config):
    engine = make_engine(dataclasses.replace(engine_config, tcp_max_connections=40, tcp_max_per_client=8))
    hog = [connect(engine.port, source="127.0.0.2") for _ in range(60)]
    try:
        # Another client gets in at once, while the hog keeps reopening.
        for _ in range(5):
            with connect(engine.port, source="127.0.0.3") as sock:
                sock.sendall(framed("localhost", qid=7))
                assert read_message(sock).id == 7
        # The hog keeps its newest connections: each new one closed its own oldest idle one.
        newest = hog[-1]
        newest.sendall(framed("localhost", qid=8))
        assert read_message(newest).id == 8
        hog[0].settimeout(3)
        assert hog[0].recv(10) == b""
        assert engine.stats.counters.get("tcp_idle_evicted", 0) >= 60 - 8
    finally:
        for sock in hog:
            sock.close()


@pytest.mark.integration
def test_when_every_connection_is_busy_a_new_one_is_refused(make_engine, engine_config, upstream):
    upstream.behaviour.mode = "silent"  # answers never come: every connection has a query in flight
    engine = make_engine(dataclasses.replace(engine_config, tcp_max_connections=4, upstream_timeout=1.0))
    busy = [connect(engine.port, source=f"127.0.0.{10 + i}") for i in range(4)]
    try:
        for sock in busy:
            sock.sendall(framed("silent.example.com"))
        deadline = time.monotonic() + 2
        while len(engine.server.tcp.connections) < 4 or engine.forwarder.inflight < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)

        with connect(engine.port, source="127.0.0.20") as extra:
            assert extra.recv(10) == b""  # accepted by the kernel, closed by the engine

        assert engine.stats.counters.get("tcp_connections_refused") == 1
        assert len(engine.server.tcp.connections) == 4  # none of the busy ones was closed for it
    finally:
        for sock in busy:
            sock.close()


@pytest.mark.integration
def test_a_connection_is_not_read_past_its_pipeline_limit_yet_every_query_is_answered(make_engine, engine_config,
                                                                                     upstream):  # fmt: skip
    upstream.behaviour.delay = 0.3
    engine = make_engine(engine_config)
    count = MAX_TCP_PIPELINE * 3
    most_in_flight = 0
    with connect(engine.port, timeout=10) as sock:
        sock.sendall(b"".join(framed(f"pipe{i}.example.com", qid=i) for i in range(count)))
        seen = set()
        while len(seen) < count:
            owed = [c.outstanding for c in list(engine.server.tcp.connections.values())]
            most_in_flight = max([most_in_flight, *owed])
            seen.add(read_message(sock).id)
    assert seen == set(range(count))
    assert MAX_TCP_PIPELINE / 2 <= most_in_flight <= MAX_TCP_PIPELINE


def test_a_clean_stop_still_sends_the_tcp_answers_in_flight(make_engine, engine_config, upstream):
    upstream.behaviour.delay = 0.3
    engine = make_engine(engine_config)
    with connect(engine.port) as sock:
        sock.sendall(framed("inflight.example.com", qid=5))
        deadline = time.monotonic() + 2
        while engine.forwarder.inflight < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)

        engine.stop()

        reply = read_message(sock)
        assert reply.id == 5 and rcode(reply) == "NOERROR" and answers(reply) == ["A 192.0.2.1"]


@pytest.mark.parametrize("tcp", [False, True])
def test_a_query_with_bytes_after_its_last_record_gets_formerr(engine, tcp):
    query = dns.message.make_query("localhost", "A").to_wire() + b"\x00" * 100
    if tcp:
        with connect(engine.port) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            reply = read_message(sock)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(query, ("127.0.0.1", engine.port))
            reply = dns.message.from_wire(sock.recv(65535))
    assert rcode(reply) == "FORMERR"


def test_connections_holding_only_an_unfinished_message_make_room_for_a_new_client(make_engine, engine_config):
    engine = make_engine(dataclasses.replace(engine_config, tcp_max_connections=16, tcp_max_per_client=4))
    # Four addresses, four connections each, each holding one byte of a message that never completes.
    trickle = [connect(engine.port, source=f"127.0.0.{30 + i // 4}") for i in range(16)]
    try:
        for sock in trickle:
            sock.sendall(b"\x00")
        deadline = time.monotonic() + 2
        while len(engine.server.tcp.connections) < 16 or any(
            c.partial_since is None for c in list(engine.server.tcp.connections.values())
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)

        for qid in range(3):
            with connect(engine.port, source="127.0.0.50") as sock:
                sock.sendall(framed("localhost", qid=qid))
                assert read_message(sock).id == qid

        assert engine.stats.counters.get("tcp_unfinished_evicted") == 1  # the answered ones left room after them
        assert engine.stats.counters.get("tcp_connections_refused", 0) == 0
    finally:
        for sock in trickle:
            sock.close()


@pytest.mark.integration
def test_a_connection_waiting_for_an_answer_outlives_the_idle_timeout(make_engine, engine_config, upstream):
    upstream.behaviour.delay = 1.5  # past the first idle sweep, which comes a second after the start
    engine = make_engine(dataclasses.replace(engine_config, tcp_idle_timeout=0.2, upstream_timeout=3.0))
    with connect(engine.port) as sock:
        sock.sendall(framed("slow.example.com", qid=3))

        reply = read_message(sock)

    assert reply.id == 3 and answers(reply) == ["A 192.0.2.1"]
    assert engine.stats.counters.get("tcp_idle_closed", 0) == 0


def test_an_error_while_answering_held_back_queries_does_not_stop_tcp(make_engine, engine_config, upstream,
                                                                      monkeypatch):  # fmt: skip
    upstream.behaviour.delay = 0.3
    engine = make_engine(engine_config)
    handle = engine.resolver.handle
    calls = 0

    def failing_past_the_pipeline_limit(data, client, transport, addr):
        nonlocal calls
        calls += 1
        if calls == MAX_TCP_PIPELINE + 1:  # the first query held back, handled from deliver()
            raise RuntimeError("a bug in the resolver")
        return handle(data, client, transport, addr)

    monkeypatch.setattr(engine.resolver, "handle", failing_past_the_pipeline_limit)
    with connect(engine.port, timeout=10) as sock:
        sock.sendall(b"".join(framed(f"held{i}.example.com", qid=i) for i in range(MAX_TCP_PIPELINE + 2)))
        deadline = time.monotonic() + 5
        while calls <= MAX_TCP_PIPELINE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls > MAX_TCP_PIPELINE

    monkeypatch.setattr(engine.resolver, "handle", handle)
    assert answers(probe(engine.port, tcp=True)) == ["A 127.0.0.1"]  # the TCP thread is still serving
