"""Batched UDP I/O in the engine (`dnsengine.core.batchio`): the same answers as the
pure-Python loop, in fewer system calls; the loop's end-of-pass hooks."""

from __future__ import annotations

import dataclasses
import errno
import socket
import threading
import time

import dns.message
import pytest

from dnsengine.core import batchio, wire
from dnsengine.core.ioloop import IoLoop
from dnsengine.core.options import parse_upstreams
from dnsengine.core.stats import EngineStats
from dnsengine.core.upstream import UpstreamForwarder
from dnsengine.runtime.config import EngineConfig
from dnsengine.tests.test_mmsg import load_mmsg
from gloryhole_site.testing.fake_upstream import FakeUpstream

FAMILIES = [pytest.param("127.0.0.1", id="v4"), pytest.param("::1", id="v6")]


@pytest.fixture(params=["python", "batched"])
def io_mode(request, monkeypatch):
    """Engines started in the test use the pure-Python loop or the batched one."""
    if request.param == "python":
        monkeypatch.setattr(batchio, "_module", None)
    else:
        monkeypatch.setattr(batchio, "_module", load_mmsg())
    return request.param


@pytest.fixture
def burst_engine(make_engine, request):
    """make(host): an engine on `host` port 0 forwarding to a fake upstream on the same family."""
    upstreams: list[FakeUpstream] = []

    def make(host: str):
        upstream = FakeUpstream(host, 0).start()
        upstreams.append(upstream)
        config = dataclasses.replace(
            EngineConfig.from_settings(host, 0),
            upstreams=parse_upstreams(upstream.address),
            upstream_timeout=2.0,
            reload_interval=0.1,
        )
        return make_engine(config), upstream

    yield make
    for upstream in upstreams:
        upstream.stop()


def send_burst(host: str, port: int, names: list[str]) -> dict[int, dns.message.Message]:
    """Send one query per name as fast as the socket takes them; the replies by query ID."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, 0))
    queries = {}
    try:
        for i, name in enumerate(names):
            query = dns.message.make_query(name, "A")
            query.id = i
            queries[i] = query
            sock.sendto(query.to_wire(), (host, port))
        return collect(sock, queries)
    finally:
        sock.close()


def collect(sock: socket.socket, queries: dict[int, dns.message.Message], timeout: float = 10.0):
    replies: dict[int, dns.message.Message] = {}
    deadline = time.monotonic() + timeout
    sock.settimeout(0.2)
    while len(replies) < len(queries) and time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        reply = dns.message.from_wire(data)
        assert reply.id in queries and reply.id not in replies, "an unexpected or duplicate reply"
        assert reply.question == queries[reply.id].question
        replies[reply.id] = reply
    return replies


def a_records(reply: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in reply.answer for rdata in rrset]


@pytest.mark.parametrize("host", FAMILIES)
def test_it_answers_a_burst_of_500_udp_queries_in_both_modes(io_mode, burst_engine, host):
    engine, upstream = burst_engine(host)
    assert (engine.server._receiver is not None) == (io_mode == "batched")
    assert bool(engine.forwarder._senders) == (io_mode == "batched")
    # 200 names, each asked 2 or 3 times: forwarded ones, and repeats answered from
    # the cache or joined to a query already in flight.
    names = [f"n{i % 200}.burst.test" for i in range(500)]

    replies = send_burst(host, engine.port, names)

    assert len(replies) == 500
    assert all(a_records(reply) == ["192.0.2.1"] for reply in replies.values())
    assert upstream.received >= 200


def hold_loop(engine) -> threading.Event:
    """Keep the engine's I/O loop busy until the returned event is set, so what arrives meanwhile waits in
    the socket buffers and is read in full batches."""
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(5)

    threading.Thread(target=engine.loop.call, args=(hold,), daemon=True).start()
    assert holding.wait(5)
    return release


def send_held(engine, names: list[str]) -> dict[int, dns.message.Message]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    queries = {}
    try:
        release = hold_loop(engine)
        for i, name in enumerate(names):
            query = dns.message.make_query(name, "A")
            query.id = i
            queries[i] = query
            sock.sendto(query.to_wire(), ("127.0.0.1", engine.port))
        release.set()
        return collect(sock, queries)
    finally:
        sock.close()


def test_a_burst_is_read_and_answered_64_datagrams_per_system_call(burst_engine, monkeypatch):
    monkeypatch.setattr(batchio, "_module", load_mmsg())
    engine, _ = burst_engine("127.0.0.1")
    assert len(send_held(engine, ["cached.burst.test"])) == 1  # now in the cache
    receiver = engine.server._receiver
    replies_out = engine.server._udp_transport._sender._queue
    reads, writes = receiver.calls, replies_out.calls

    replies = send_held(engine, ["cached.burst.test"] * 200)

    assert len(replies) == 200
    # 200 datagrams waiting: 64 + 64 + 64 + 8, one pass each, every answer of a pass in one
    # sendmmsg: 4 calls each way (one datagram per call would be 200). The bound leaves room
    # for datagrams the kernel delivers late on a busy machine.
    assert receiver.calls - reads <= 8
    assert replies_out.calls - writes <= 8


def test_queries_forwarded_in_one_pass_leave_in_one_sendmmsg_per_socket(burst_engine, monkeypatch):
    monkeypatch.setattr(batchio, "_module", load_mmsg())
    engine, upstream = burst_engine("127.0.0.1")
    senders = [sender._queue for sender in engine.forwarder._senders.values()]
    before = sum(queue.calls for queue in senders)

    replies = send_held(engine, [f"u{i}.burst.test" for i in range(192)])

    assert len(replies) == 192
    assert upstream.received == 192
    # Three passes of 64, each forwarding over the upstream's sockets with one call per socket
    # (one query per call would be 192); room left for datagrams delivered late on a busy machine.
    assert sum(queue.calls for queue in senders) - before <= 6 * len(senders)


# -- the loop's end-of-pass hooks and the batched sender --------------------------------


@pytest.fixture
def loop():
    loop = IoLoop("test-io")
    loop.start()
    yield loop
    loop.stop()


def test_an_end_of_pass_hook_runs_once_after_the_pass_that_registered_it(loop):
    order: list[str] = []
    done = threading.Event()

    def late() -> None:
        order.append("hook of a hook")
        done.set()

    def hook() -> None:
        order.append("hook")
        loop.at_pass_end(late)

    def step() -> None:
        assert loop.in_loop()
        loop.at_pass_end(hook)
        order.append("call")

    loop.call(step)
    assert done.wait(2)
    assert order == ["call", "hook", "hook of a hook"]
    assert not loop.in_loop()  # the test's thread


def test_a_sender_off_the_loop_thread_leaves_the_send_to_its_caller(loop):
    mmsg = load_mmsg()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sender = batchio.BatchedSender(a, loop, EngineStats(), mmsg, lambda tag, exc: None)
        assert sender.send(b"x") is False
        queued: list[bool] = []
        loop.call(lambda: queued.append(sender.send(b"y")))
        assert queued == [True]
        b.settimeout(2)
        assert b.recv(100) == b"y"  # flushed at the end of that pass
    finally:
        a.close()
        b.close()


def test_datagrams_a_full_send_buffer_holds_too_long_are_dropped_and_counted(loop, monkeypatch):
    mmsg = load_mmsg()
    monkeypatch.setattr(batchio, "STALL_LIMIT", 0.05)
    stats = EngineStats()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # fills for real, see test_mmsg
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        a.setblocking(False)
        sender = batchio.BatchedSender(a, loop, stats, mmsg, lambda tag, exc: None)
        loop.call(lambda: [sender.send(b"x" * 1000) for _ in range(64)])
        deadline = time.monotonic() + 5
        while not stats.counters.get("udp_send_dropped") and time.monotonic() < deadline:
            time.sleep(0.01)
        b.setblocking(False)
        delivered = 0
        while True:
            try:
                b.recv(2000)
            except BlockingIOError:
                break
            delivered += 1
        assert stats.counters["udp_send_dropped"] > 0
        assert stats.counters["udp_send_dropped"] + delivered == 64
    finally:
        a.close()
        b.close()


class RefusingQueue:
    """Stands in for a socket's `_mmsg.Sender` whose every datagram the kernel refuses."""

    def __init__(self) -> None:
        self.tags: list = []
        self.failed: list = []
        self.full = False

    def __len__(self) -> int:
        return len(self.tags)

    def queue(self, data, addr=None, tag=None) -> bool:
        self.tags.append(tag)
        return True

    def flush(self, fd: int) -> int:
        self.failed = [(tag, errno.ECONNREFUSED) for tag in self.tags]
        self.tags = []
        return 0

    def clear(self) -> int:
        n, self.tags = len(self.tags), []
        return n


def test_a_forwarded_query_the_kernel_refuses_at_the_end_of_the_pass_fails_over(loop, monkeypatch):
    monkeypatch.setattr(batchio, "_module", load_mmsg())
    first, second = FakeUpstream().start(), FakeUpstream().start()
    stats = EngineStats()
    forwarder = UpstreamForwarder(parse_upstreams(f"{first.address},{second.address}"), 2.0, 100, stats, loop,
                                  sockets_per_upstream=1)  # fmt: skip
    forwarder.start()
    try:
        refused = forwarder._sockets[0][0].fileno()
        forwarder._senders[refused]._queue = RefusingQueue()
        got: list = []
        done = threading.Event()

        def callback(reply, label) -> None:
            got.append((reply, label))
            done.set()

        loop.call(lambda: forwarder.forward(wire.text_to_name("example.com"), 1, 1, False, callback))

        assert done.wait(5)
        reply, label = got[0]
        assert label == second.address and reply is not None
        assert first.received == 0 and second.received == 1
        assert stats.counters["upstream_errors"] == 1
        assert stats.counters["upstream_failover"] == 1
    finally:
        forwarder.stop()
        first.stop()
        second.stop()
