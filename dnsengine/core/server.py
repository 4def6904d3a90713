"""UDP and TCP listeners on a fixed set of threads.

- UDP: a reader on the engine's I/O loop (`dnsengine.core.ioloop`), the thread that
  also reads the upstreams' replies, so a forwarded query never crosses threads.
  It reads up to `UDP_BATCH` datagrams per pass; the socket's large receive
  buffer absorbs bursts. With the compiled `_mmsg` extension (`dnsengine.core.batchio`)
  it reads them with one recvmmsg, and the answers given during the pass leave
  with one sendmmsg at its end.
- TCP: one thread multiplexing every connection with `selectors`: bounded
  connection count, an idle timeout, several queries per connection (answered
  as they complete, possibly out of order, as RFC 7766 allows), a bounded
  output buffer per connection.

Neither ever waits for an upstream: the resolver answers from memory or hands
the query to the forwarder, and the reply is sent when the upstream's comes in.

One module past ~500 lines on purpose: most of it is the TCP listener's connection
bookkeeping (limits, eviction, half-close, outstanding answers), which is one
state machine; the UDP reader beside it is short.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
import threading
import time
from collections import deque

from dnsengine.core import batchio
from dnsengine.core.ioloop import IoLoop
from dnsengine.core.resolver import Resolver
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog

logger = logging.getLogger(__name__)
_warn = RateLimitedLog(logger, interval=10.0)

UDP_RCVBUF = 4 << 20
# Datagrams read per pass of the I/O loop before it looks at the other sockets again.
UDP_BATCH = 64
# recvmmsg's buffer per datagram: the largest a UDP datagram can be, so a query is read
# whole whatever its size, as recvfrom(65535) does (a padded one gets FORMERR, not a cut
# copy). Pages no datagram reached cost address space, not memory.
UDP_MAX_QUERY = 65535
MAX_TCP_OUTBUF = 256 * 1024
# Queries in flight on one TCP connection; past it the connection is not read until answers go out.
MAX_TCP_PIPELINE = 100
_U16 = struct.Struct("!H")


class UdpTransport:
    proto = "udp"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, reply: bytes, addr) -> None:
        try:
            self.sock.sendto(reply, addr)
        except OSError as exc:
            _warn.warning("UDP send to %s failed: %s", addr, exc)


class BatchedUdpTransport(UdpTransport):
    """Answers given on the I/O loop go out together at the end of its pass (sendmmsg);
    those from other threads (a TCP retry's) at once."""

    def __init__(self, sock: socket.socket, sender: batchio.BatchedSender) -> None:
        super().__init__(sock)
        self._sender = sender

    def send(self, reply: bytes, addr) -> None:
        if not self._sender.send(reply, addr, addr):
            super().send(reply, addr)

    def close(self) -> None:
        self._sender.close()


def _udp_send_failed(addr, exc: OSError) -> None:
    _warn.warning("UDP send to %s failed: %s", addr, exc)


class TcpConnection:
    """One client connection. Only the TCP thread touches its socket and buffers.

    `send` may be called from any thread: the TCP thread writes at once; the I/O
    loop (forwarded answers) and the upstream TCP threads hand the reply to the
    TCP thread through its inbox, which never blocks. No lock is shared between
    the thread that serves UDP and a client's connection, so no client can stall
    it by not reading.
    """

    __slots__ = ("closed", "events", "inbuf", "last_activity", "listener", "outbuf", "outstanding", "partial_since",
                 "peer", "read_closed", "sock")  # fmt: skip

    proto = "tcp"

    def __init__(self, sock: socket.socket, peer: str, listener: TcpListener, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.listener = listener
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closed = False
        self.read_closed = False  # the client sent FIN: answer what it asked, then close
        self.outstanding = 0  # queries handed to the resolver and not answered yet
        self.last_activity = now
        self.partial_since: float | None = None  # when the current incomplete message began
        self.events = 0  # what the selector watches for now

    def send(self, reply: bytes, addr=None) -> None:
        if len(reply) > 65535:  # cannot be framed; the resolver never builds one
            return
        framed = _U16.pack(len(reply)) + reply
        listener = self.listener
        if threading.get_ident() == listener.thread_ident:
            listener.deliver(self, framed)
        else:
            listener.post(self, framed)

    @property
    def idle(self) -> bool:
        """Nothing asked and unanswered, nothing unsent: closing it costs the client nothing."""
        return not self.outstanding and not self.outbuf and not self.inbuf

    @property
    def unfinished_only(self) -> bool:
        """Holds part of a message and nothing else: no answer owed, nothing unsent."""
        return not self.outstanding and not self.outbuf and self.partial_since is not None


class TcpListener:
    """Every TCP connection, multiplexed on one thread with `selectors`.

    Bounds: `max_connections` in all and `max_per_client` per client address
    (when either is reached, the longest-idle connection that has nothing in
    flight is closed to make room; with none, the new one is refused);
    `MAX_TCP_PIPELINE` queries in flight per connection (past it the
    connection is not read until answers go out, so TCP's own flow control
    holds the client back); `MAX_TCP_OUTBUF` bytes of unsent answers (a client
    that does not read is disconnected); an idle timeout, counted from a
    message's first byte for one that never completes.

    A client that half-closes (FIN after its queries, RFC 7766 6.2.4) still
    gets every answer, forwarded ones included, before the connection closes.

    The encrypted listeners (`dnsengine.core.tls`, `dnsengine.core.doh`) are this one
    with a TLS layer and, for DoH, HTTP in place of the length prefix: `kind` names
    their counters, `pipeline` bounds what one connection may have in flight.
    """

    kind = "tcp"
    pipeline = MAX_TCP_PIPELINE

    def __init__(self, sock: socket.socket, resolver: Resolver, stats: EngineStats, max_connections: int,
                 idle_timeout: float, max_per_client: int | None = None) -> None:  # fmt: skip
        self.sock = sock
        self.resolver = resolver
        self.stats = stats
        self.max_connections = max_connections
        self.max_per_client = max_per_client or max_connections
        self.idle_timeout = idle_timeout
        self.connections: dict[int, TcpConnection] = {}
        self.per_client: dict[str, int] = {}
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Answers from other threads: (connection, framed reply). Appending never blocks.
        self._inbox: deque[tuple[TcpConnection, bytes]] = deque()
        self._wake_pending = False
        self._reading = True
        self._handling = False
        self._stop = threading.Event()
        self.thread_ident: int | None = None

    # -- from any thread --------------------------------------------------------------

    def post(self, conn: TcpConnection, framed: bytes) -> None:
        """Hand an answer to the TCP thread. Never blocks, whatever the client does."""
        self._inbox.append((conn, framed))
        if not self._wake_pending:
            self._wake_pending = True
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full: a wake-up is pending anyway; or closed at stop
            pass

    def stop_reading(self) -> None:
        """Take no new connections or queries; answers still in flight keep going out until stop()."""
        self._reading = False
        self._wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    # -- the TCP thread ---------------------------------------------------------------

    def run(self) -> None:
        self.thread_ident = threading.get_ident()
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ, None)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        listening = True
        next_sweep = time.monotonic() + 1
        try:
            while not self._stop.is_set():
                for key, events in self.selector.select(timeout=0.5):
                    try:
                        self._dispatch(key, events)
                    except Exception:
                        logger.exception("TCP listener error")
                self._guarded(self._take_inbox)
                if listening and not self._reading:
                    listening = False
                    self.selector.unregister(self.sock)
                    for conn in list(self.connections.values()):
                        conn.read_closed = True
                        self._settle(conn)
                now = time.monotonic()
                if now >= next_sweep:
                    self._guarded(self._sweep_idle, now)
                    next_sweep = now + min(1.0, self.idle_timeout / 2)
        finally:
            self._guarded(self._take_inbox)
            for conn in list(self.connections.values()):
                self._close(conn)
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _guarded(self, step, *args) -> None:
        # An unexpected error in one step is logged; the thread that serves every
        # TCP client keeps going.
        try:
            step(*args)
        except Exception:
            logger.exception("TCP listener error")

    def _dispatch(self, key, events) -> None:
        conn = key.data
        if conn is None:
            self._accept()
        elif conn is self._wake_r:
            try:
                self._wake_r.recv(4096)
            except OSError:
                pass
        elif not conn.closed:  # closed by an earlier event of this pass
            if events & selectors.EVENT_READ:
                self._read(conn)
            if events & selectors.EVENT_WRITE and not conn.closed:
                self._flush(conn)
                self._settle(conn)

    def _take_inbox(self) -> None:
        self._wake_pending = False
        inbox = self._inbox
        while inbox:
            conn, framed = inbox.popleft()
            try:
                self.deliver(conn, framed)
            except Exception:
                logger.exception("TCP listener error delivering an answer to %s", conn.peer)
                self._close(conn)

    def deliver(self, conn: TcpConnection, framed: bytes) -> None:
        """Queue one answer on `conn` and write what the socket takes now (TCP thread only)."""
        if conn.closed:
            return
        if conn.outstanding:
            conn.outstanding -= 1
        if len(conn.outbuf) + len(framed) > MAX_TCP_OUTBUF:
            # A client that does not read its answers gets disconnected,
            # not an ever-growing buffer.
            self.stats.count(f"{self.kind}_slow_readers_closed")
            self._close(conn)
            return
        conn.outbuf += framed
        self._flush(conn)
        if conn.closed:
            return
        if conn.inbuf and not self._handling and not conn.read_closed and self._room(conn):
            self._handle_messages(conn, time.monotonic())  # queries held back by the pipeline limit
        self._settle(conn)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                client, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the others
                _warn.warning("TCP accept failed: %s", exc)
                return
            peer = addr[0]
            if not self._make_room(peer):
                self.stats.count(f"{self.kind}_connections_refused")
                client.close()
                continue
            client.setblocking(False)
            conn = self._connection_new(client, peer, time.monotonic())
            if conn is None:
                continue
            self.connections[conn.sock.fileno()] = conn
            self.per_client[peer] = self.per_client.get(peer, 0) + 1
            self._opened(conn)

    def _room(self, conn: TcpConnection) -> bool:
        """May `conn` have one more query in flight?"""
        return conn.outstanding < self.pipeline

    def _connection_new(self, client: socket.socket, peer: str, now: float) -> TcpConnection | None:
        return TcpConnection(client, peer, self, now)

    def _opened(self, conn: TcpConnection) -> None:
        self._settle(conn)

    def _make_room(self, peer: str) -> bool:
        """Is there room for one more connection from `peer`? Closes the longest-idle one if that makes room."""
        if self.per_client.get(peer, 0) >= self.max_per_client:
            candidates = [c for c in self.connections.values() if c.peer == peer]
        elif len(self.connections) >= self.max_connections:
            candidates = list(self.connections.values())
        else:
            return True
        idle = [c for c in candidates if c.idle]
        if idle:
            self.stats.count(f"{self.kind}_idle_evicted")
            self._close(min(idle, key=lambda c: c.last_activity))
            return True
        # Connections that only hold the start of a message (a client trickling
        # bytes, or one that never finishes) are next: nothing of theirs is in
        # flight, so the one whose message began longest ago goes.
        unfinished = [c for c in candidates if c.unfinished_only]
        if not unfinished:
            return False
        self.stats.count(f"{self.kind}_unfinished_evicted")
        self._close(min(unfinished, key=lambda c: c.partial_since))
        return True

    def _read(self, conn: TcpConnection) -> None:
        try:
            data = conn.sock.recv(65537)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        now = time.monotonic()
        if not data:
            conn.read_closed = True
            self._settle(conn)
            return
        conn.last_activity = now
        conn.inbuf += data
        self._handle_messages(conn, now)
        self._settle(conn)

    def _handle_messages(self, conn: TcpConnection, now: float) -> None:
        # An answer given at once comes back through deliver(), which must not
        # start a nested pass over the same buffer.
        self._handling = True
        try:
            self._handle_buffered(conn, now)
        finally:
            self._handling = False

    def _handle_buffered(self, conn: TcpConnection, now: float) -> None:
        buf = conn.inbuf
        handled = 0
        while len(buf) >= 2 and self._room(conn):
            length = (buf[0] << 8) | buf[1]
            if length < 12:
                # Too short to be a DNS message: the stream cannot be trusted any more.
                self.stats.count(f"{self.kind}_bad_frames")
                self._close(conn)
                return
            if len(buf) < 2 + length:
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            handled += 1
            conn.outstanding += 1
            try:
                answered = self.resolver.handle(message, conn.peer, conn, None)
            except BaseException:
                conn.outstanding -= 1
                raise
            if not answered:
                conn.outstanding -= 1  # dropped (a response, say): no answer will come
            if conn.closed:
                return
        if not buf:
            conn.partial_since = None
        elif handled or conn.partial_since is None:
            conn.partial_since = now

    def _flush(self, conn: TcpConnection) -> None:
        if not conn.outbuf:
            return
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        del conn.outbuf[:sent]
        conn.last_activity = time.monotonic()

    def _settle(self, conn: TcpConnection) -> None:
        """Close a finished connection, or watch it for what it now needs."""
        if conn.closed:
            return
        if conn.read_closed and not conn.outstanding and not conn.outbuf:
            self._close(conn)
            return
        events = 0
        if not conn.read_closed and self._reading and self._room(conn):
            events |= selectors.EVENT_READ
        if conn.outbuf:
            events |= selectors.EVENT_WRITE
        self._watch(conn, events)

    def _watch(self, conn: TcpConnection, events: int) -> None:
        if events == conn.events:
            return
        if not conn.events:
            self.selector.register(conn.sock, events, conn)
        elif not events:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, events, conn)
        conn.events = events

    def _sweep_idle(self, now: float) -> None:
        for conn in list(self.connections.values()):
            # A connection still owed answers is not idle (RFC 7766 6.2.3); the
            # upstream timeout bounds how long it waits for them.
            idle = not conn.outstanding and now - conn.last_activity > self.idle_timeout
            # A message that never completes (a lying length prefix, a half-open
            # client trickling bytes) counts from its first byte, not its last.
            stalled = conn.partial_since is not None and now - conn.partial_since > self.idle_timeout
            if idle or stalled:
                self.stats.count(f"{self.kind}_idle_closed")
                self._close(conn)

    def _close(self, conn: TcpConnection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.connections.pop(conn.sock.fileno(), None)
        left = self.per_client.get(conn.peer, 1) - 1
        if left:
            self.per_client[conn.peer] = left
        else:
            self.per_client.pop(conn.peer, None)
        if conn.events:
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.events = 0
        conn.sock.close()


class DNSServer:
    """Binds UDP and TCP on one address and port; start() and stop()."""

    def __init__(self, resolver: Resolver, stats: EngineStats, host: str, port: int, *, loop: IoLoop,
                 tcp_max_connections: int = 256, tcp_idle_timeout: float = 10.0,
                 tcp_max_per_client: int | None = None) -> None:  # fmt: skip
        self.resolver = resolver
        self.stats = stats
        self.host = host
        self.port = port
        self.loop = loop
        self._udp_transport: UdpTransport | None = None
        self._receiver = None  # _mmsg.Receiver when batched
        self.tcp_max_connections = tcp_max_connections
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_max_per_client = tcp_max_per_client
        self._threads: list[threading.Thread] = []
        self.udp_sock: socket.socket | None = None
        self.tcp: TcpListener | None = None
        # rundns --processes N: every worker binds the same port and the kernel spreads
        # the clients over them (set before bind()).
        self.reuse_port = False

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # With port 0 the kernel picks the UDP port; the same number can be taken
        # for TCP, rarely, so try a few times.
        for _ in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                if family == socket.AF_INET6:
                    for s in (udp, tcp):
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
                if self.reuse_port:
                    for s in (udp, tcp):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                udp.bind((self.host, self.port))
                port = udp.getsockname()[1]
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self.host, port))
                tcp.listen(128)
                self.port = port
                return udp, tcp
            except OSError:
                udp.close()
                tcp.close()
                if self.port != 0:
                    raise
        raise OSError("could not bind UDP and TCP on the same port")

    def bind(self) -> int:
        """Bind both sockets now (start() does it otherwise); returns the port."""
        if self.udp_sock is None:
            udp, tcp = self._bind()
            self.udp_sock = udp
            self.tcp = TcpListener(tcp, self.resolver, self.stats, self.tcp_max_connections, self.tcp_idle_timeout,
                                   self.tcp_max_per_client)  # fmt: skip
        return self.port

    def start(self) -> None:
        self.bind()
        udp = self.udp_sock
        udp.setblocking(False)
        module = batchio.mmsg()
        if module is None:
            self._udp_transport = UdpTransport(udp)
            self.loop.add_reader(udp, self._on_udp_readable)
        else:
            self._receiver = module.Receiver(UDP_BATCH, UDP_MAX_QUERY)
            sender = batchio.BatchedSender(udp, self.loop, self.stats, module, _udp_send_failed)
            self._udp_transport = BatchedUdpTransport(udp, sender)
            self.loop.add_reader(udp, self._on_udp_readable_batched)
        self._threads.append(threading.Thread(target=self.tcp.run, name="dns-tcp", daemon=True))
        for thread in self._threads:
            thread.start()

    def _on_udp_readable(self, sock: socket.socket) -> None:
        handle = self.resolver.handle
        recvfrom = sock.recvfrom
        transport = self._udp_transport
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # An error queued on the socket (an ICMP error for an earlier reply, say):
                # log it and let the loop come back while the socket stays readable.
                _warn.warning("UDP receive failed: %s", exc)
                return
            if not data:
                continue
            try:
                handle(data, addr[0], transport, addr)
            except Exception:
                logger.exception("error handling a UDP query from %s", addr[0])

    def _on_udp_readable_batched(self, sock: socket.socket) -> None:
        """`_on_udp_readable` with one recvmmsg for the whole batch."""
        try:
            datagrams = self._receiver.recv(sock.fileno())
        except OSError as exc:
            _warn.warning("UDP receive failed: %s", exc)
            return
        handle = self.resolver.handle
        transport = self._udp_transport
        for data, addr in datagrams:
            if not data:
                continue
            try:
                handle(data, addr[0], transport, addr)
            except Exception:
                logger.exception("error handling a UDP query from %s", addr[0])

    def stop_receiving(self) -> None:
        """Stop reading queries; answers still in flight go out, over UDP and TCP, until close()."""
        if self._udp_transport is not None:
            self.loop.remove_reader(self.udp_sock)
        if self.tcp is not None:
            self.tcp.stop_reading()

    def close(self) -> None:
        if self.tcp is not None:
            self.tcp.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        if isinstance(self._udp_transport, BatchedUdpTransport):
            self.loop.call(self._udp_transport.close)
        if self.udp_sock is not None:
            self.udp_sock.close()
        if self.tcp is not None:
            self.tcp.sock.close()

    def stop(self) -> None:
        """Stop accepting queries and close the sockets."""
        self.stop_receiving()
        self.close()
