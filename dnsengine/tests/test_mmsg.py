"""The compiled recvmmsg/sendmmsg module (`dnsengine.core._mmsg`), on real loopback sockets."""

from __future__ import annotations

import errno
import os
import select
import socket
import time

import pytest

FAMILIES = [
    pytest.param(socket.AF_INET, "127.0.0.1", id="v4"),
    pytest.param(socket.AF_INET6, "::1", id="v6"),
]


def load_mmsg():
    """The built extension. Not built: a failure when the build succeeded (make test-sqlite sets
    GLORYHOLE_EXPECT_EXTENSIONS=1 then), else skipped, so a machine without a compiler still runs
    `make test` (pure Python, the listener's one-datagram loop)."""
    try:
        from dnsengine.core import _mmsg
    except ImportError:
        if os.environ.get("GLORYHOLE_EXPECT_EXTENSIONS") == "1":
            pytest.fail("GLORYHOLE_EXPECT_EXTENSIONS=1 but dnsengine.core._mmsg is not built")
        pytest.skip("dnsengine.core._mmsg is not built (make ext; see .venv/.ext for why)")
    return _mmsg


@pytest.fixture
def mmsg():
    return load_mmsg()


@pytest.fixture
def sockets():
    opened: list[socket.socket] = []

    def make(family: int, host: str, *, bind: bool = True, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        opened.append(sock)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if bind:
            sock.bind((host, 0))
        sock.setblocking(False)
        return sock

    yield make
    for sock in opened:
        sock.close()


def recv_all(receiver, sock: socket.socket, want: int, addresses: bool = True, timeout: float = 3.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        batch = receiver.recv(sock.fileno(), addresses)
        if not batch:
            time.sleep(0.001)
        got.extend(batch)
    return got


def closed_port(family: int, host: str) -> int:
    """A UDP port on loopback nothing listens on (bound, then closed)."""
    probe = socket.socket(family, socket.SOCK_DGRAM)
    probe.bind((host, 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_it_reads_every_one_of_more_than_64_queued_datagrams_64_per_call(mmsg, sockets, family, host):
    server = sockets(family, host, rcvbuf=1 << 20)
    client = sockets(family, host)
    for i in range(150):
        client.sendto(b"query %d" % i, server.getsockname())
    receiver = mmsg.Receiver(64, 4096)
    first = receiver.recv(server.fileno())
    rest = recv_all(receiver, server, 150 - len(first))

    assert len(first) == 64
    assert [data for data, _ in first + rest] == [b"query %d" % i for i in range(150)]
    assert {addr for _, addr in first + rest} == {client.getsockname()}
    assert receiver.recv(server.fileno()) == []
    assert receiver.truncated == 0


@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_its_addresses_are_the_socket_modules(mmsg, sockets, family, host):
    server = sockets(family, host)
    clients = [sockets(family, host) for _ in range(3)]
    for client in clients:
        client.sendto(b"x", server.getsockname())
        client.sendto(b"y", server.getsockname())
    got = recv_all(mmsg.Receiver(), server, 6)

    expected = [c.getsockname() for c in clients for _ in range(2)]
    assert [addr for _, addr in got] == expected
    assert all(len(addr) == (4 if family == socket.AF_INET6 else 2) for _, addr in got)


@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_a_batch_of_sends_all_arrive_with_one_system_call(mmsg, sockets, family, host):
    server = sockets(family, host, rcvbuf=1 << 20)
    client = sockets(family, host)
    sender = mmsg.Sender(64)
    for i in range(64):
        assert sender.queue(b"reply %d" % i, server.getsockname(), i)

    assert sender.queue(b"one too many", server.getsockname()) is False
    assert sender.flush(client.fileno()) == 64
    assert sender.calls == 1
    assert sender.failed == []
    assert len(sender) == 0
    got = recv_all(mmsg.Receiver(), server, 64)
    assert [data for data, _ in got] == [b"reply %d" % i for i in range(64)]
    assert {addr for _, addr in got} == {client.getsockname()}


def test_an_oversize_datagram_is_dropped_and_counted_never_cut_short(mmsg, sockets):
    server = sockets(socket.AF_INET, "127.0.0.1")
    client = sockets(socket.AF_INET, "127.0.0.1")
    for payload in (b"a" * 100, b"b" * 513, b"c" * 512, b"d" * 60000):
        client.sendto(payload, server.getsockname())
    receiver = mmsg.Receiver(8, 512)

    got = recv_all(receiver, server, 2)
    assert [data for data, _ in got] == [b"a" * 100, b"c" * 512]
    assert receiver.truncated == 2
    assert receiver.recv(server.fileno()) == []


@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_a_refused_message_is_reported_and_the_rest_of_the_batch_goes_out(mmsg, sockets, family, host):
    server = sockets(family, host, rcvbuf=1 << 20)
    client = sockets(family, host)
    sender = mmsg.Sender()
    dead = (host, closed_port(family, host))
    for i in range(10):
        if i == 3:
            sender.queue(b"to port 0", (host, 0), "port 0")  # the kernel refuses it: EINVAL
        elif i == 6:
            sender.queue(b"to nobody", dead, "dead")  # goes out; an ICMP port unreachable comes back
        else:
            sender.queue(b"reply %d" % i, server.getsockname(), i)

    sent = sender.flush(client.fileno())

    assert sender.failed == [("port 0", errno.EINVAL)]
    assert sent == 9
    got = recv_all(mmsg.Receiver(), server, 8)
    assert [data for data, _ in got] == [b"reply %d" % i for i in range(10) if i not in (3, 6)]
    # The ICMP error does not stick to an unconnected socket: the next batch goes out whole.
    sender.queue(b"again", server.getsockname(), "again")
    assert sender.flush(client.fileno()) == 1
    assert [data for data, _ in recv_all(mmsg.Receiver(), server, 1)] == [b"again"]


@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_an_icmp_error_on_a_connected_socket_fails_one_message_and_is_raised_by_recv(mmsg, sockets, family, host):
    client = sockets(family, host)
    client.connect((host, closed_port(family, host)))
    receiver = mmsg.Receiver()
    client.send(b"first")
    deadline = time.monotonic() + 3
    with pytest.raises(ConnectionRefusedError):  # the ICMP port unreachable the first one drew
        while time.monotonic() < deadline:
            receiver.recv(client.fileno(), False)
            time.sleep(0.001)
    client.send(b"second")  # draws another ICMP error, reported by the next send
    assert select.select([client], [], [], 3)[0]  # the error is queued (not consumed by looking)
    sender = mmsg.Sender()
    for i in range(3):
        sender.queue(b"q%d" % i, None, i)

    sent = sender.flush(client.fileno())

    assert sender.failed == [(0, errno.ECONNREFUSED)]
    assert sent == 2
    assert len(sender) == 0


def test_a_full_send_buffer_keeps_the_rest_queued_for_the_next_flush(mmsg):
    # A UDP socket on loopback hands its datagrams over at once and never fills its
    # send buffer; a Unix datagram socket keeps them charged to the sender until the
    # peer reads them, so a tiny SO_SNDBUF fills for real and sendmmsg meets EAGAIN.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        a.setblocking(False)
        b.setblocking(False)
        sender = mmsg.Sender()
        for i in range(64):
            sender.queue(b"%04d" % i + b"x" * 996, None, i)

        sent = sender.flush(a.fileno())
        assert 0 < sent < 64
        assert len(sender) == 64 - sent
        assert sender.failed == []

        receiver = mmsg.Receiver(64, 2048)
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while (len(sender) or len(got) < 64) and time.monotonic() < deadline:
            got.extend(receiver.recv(b.fileno(), False))
            sender.flush(a.fileno())
            assert sender.failed == []
        assert [data[:4] for data in got] == [b"%04d" % i for i in range(64)]
        # The queue refills from the front after a partial flush.
        assert sender.queue(b"after", None) is True
    finally:
        a.close()
        b.close()


def test_it_refuses_an_address_that_is_not_numeric(mmsg):
    sender = mmsg.Sender()
    with pytest.raises(ValueError):
        sender.queue(b"x", ("localhost", 53))
    with pytest.raises(OverflowError):
        sender.queue(b"x", ("127.0.0.1", 70000))
    assert len(sender) == 0


def test_an_empty_socket_reads_as_an_empty_list(mmsg, sockets):
    server = sockets(socket.AF_INET, "127.0.0.1")
    assert mmsg.Receiver().recv(server.fileno()) == []
    with pytest.raises(OSError):
        mmsg.Receiver().recv(-1)
