"""UDP and TCP listeners on a fixed set of threads.

- UDP: a reader on the engine's I/O loop (`dnsengine.ioloop`), the thread that
  also reads the upstreams' replies, so a forwarded query never crosses threads.
  It reads up to `UDP_BATCH` datagrams per pass; the socket's large receive
  buffer absorbs bursts.
- TCP: one thread multiplexing every connection with `selectors`: bounded
  connection count, an idle timeout, several queries per connection (answered
  as they complete, possibly out of order, as RFC 7766 allows), a bounded
  output buffer per connection.

Neither ever waits for an upstream: the resolver answers from memory or hands
the query to the forwarder, and the reply is sent when the upstream's comes in.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
import threading
import time
from collections import deque

from dnsengine.ioloop import IoLoop
from dnsengine.resolver import Resolver
from dnsengine.stats import EngineStats
from dnsengine.throttle import RateLimitedLog

logger = logging.getLogger(__name__)
_warn = RateLimitedLog(logger, interval=10.0)

UDP_RCVBUF = 4 << 20
# Datagrams read per pass of the I/O loop before it looks at the other sockets again.
UDP_BATCH = 64
MAX_TCP_OUTBUF = 256 * 1024


class UdpTransport:
    proto = "udp"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, reply: bytes, addr) -> None:
        try:
            self.sock.sendto(reply, addr)
        except OSError as exc:
            _warn.warning("UDP send to %s failed: %s", addr, exc)


class TcpConnection:
    """One client connection; `send` may be called from any thread."""

    proto = "tcp"

    def __init__(self, sock: socket.socket, peer: str, server: TcpListener) -> None:
        self.sock = sock
        self.peer = peer
        self.server = server
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.lock = threading.Lock()
        self.closed = False
        self.last_activity = time.monotonic()
        self.partial_since: float | None = None  # when the current incomplete message began
        self.want_write = False

    def send(self, reply: bytes, addr=None) -> None:
        if len(reply) > 65535:  # cannot be framed; the resolver never builds one
            return
        framed = struct.pack("!H", len(reply)) + reply
        with self.lock:
            if self.closed:
                return
            if not self.outbuf:
                try:
                    sent = self.sock.send(framed)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self.server.request_close(self)
                    return
                framed = framed[sent:]
                if not framed:
                    self.last_activity = time.monotonic()
                    return
            if len(self.outbuf) + len(framed) > MAX_TCP_OUTBUF:
                # A client that does not read its answers gets disconnected,
                # not an ever-growing buffer.
                self.server.request_close(self)
                return
            self.outbuf += framed
        self.server.request_write(self)


class TcpListener:
    def __init__(self, sock: socket.socket, resolver: Resolver, stats: EngineStats, max_connections: int,
                 idle_timeout: float) -> None:  # fmt: skip
        self.sock = sock
        self.resolver = resolver
        self.stats = stats
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections: dict[int, TcpConnection] = {}
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._requests: deque[tuple[str, TcpConnection]] = deque()
        self._stop = threading.Event()

    def request_write(self, conn: TcpConnection) -> None:
        self._requests.append(("write", conn))
        self._wake()

    def request_close(self, conn: TcpConnection) -> None:
        self._requests.append(("close", conn))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def run(self) -> None:
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ, "accept")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        next_sweep = time.monotonic() + 1
        try:
            while not self._stop.is_set():
                for key, events in self.selector.select(timeout=0.5):
                    try:
                        self._dispatch(key, events)
                    except Exception:
                        logger.exception("TCP listener error")
                self._apply_requests()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep_idle(now)
                    next_sweep = now + min(1.0, self.idle_timeout / 2)
        finally:
            for conn in list(self.connections.values()):
                self._close(conn)
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _dispatch(self, key, events) -> None:
        if key.data == "accept":
            self._accept()
        elif key.data == "wake":
            try:
                self._wake_r.recv(4096)
            except OSError:
                pass
        else:
            conn: TcpConnection = key.data
            if events & selectors.EVENT_READ:
                self._read(conn)
            if events & selectors.EVENT_WRITE and not conn.closed:
                self._flush(conn)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                client, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the others
                _warn.warning("TCP accept failed: %s", exc)
                return
            if len(self.connections) >= self.max_connections:
                self.stats.count("tcp_connections_refused")
                client.close()
                continue
            client.setblocking(False)
            conn = TcpConnection(client, addr[0], self)
            self.connections[client.fileno()] = conn
            self.selector.register(client, selectors.EVENT_READ, conn)

    def _read(self, conn: TcpConnection) -> None:
        try:
            data = conn.sock.recv(65537)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        now = time.monotonic()
        conn.last_activity = now
        buf = conn.inbuf
        buf += data
        handled = 0
        while len(buf) >= 2:
            length = (buf[0] << 8) | buf[1]
            if length < 12:
                # Too short to be a DNS message: the stream cannot be trusted any more.
                self.stats.count("tcp_bad_frames")
                self._close(conn)
                return
            if len(buf) < 2 + length:
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            handled += 1
            self.resolver.handle(message, conn.peer, conn, None)
            if conn.closed:
                return
        if not buf:
            conn.partial_since = None
        elif handled or conn.partial_since is None:
            conn.partial_since = now

    def _flush(self, conn: TcpConnection) -> None:
        with conn.lock:
            if conn.outbuf:
                try:
                    sent = conn.sock.send(conn.outbuf)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = -1
                if sent > 0:
                    del conn.outbuf[:sent]
                    conn.last_activity = time.monotonic()
            pending = bool(conn.outbuf)
        if sent < 0:
            self._close(conn)
            return
        if not pending and conn.want_write:
            conn.want_write = False
            self.selector.modify(conn.sock, selectors.EVENT_READ, conn)

    def _apply_requests(self) -> None:
        while self._requests:
            action, conn = self._requests.popleft()
            if conn.closed:
                continue
            if action == "close":
                self._close(conn)
            elif not conn.want_write:
                conn.want_write = True
                self.selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def _sweep_idle(self, now: float) -> None:
        for conn in list(self.connections.values()):
            idle = now - conn.last_activity > self.idle_timeout
            # A message that never completes (a lying length prefix, a half-open
            # client trickling bytes) counts from its first byte, not its last.
            stalled = conn.partial_since is not None and now - conn.partial_since > self.idle_timeout
            if idle or stalled:
                self.stats.count("tcp_idle_closed")
                self._close(conn)

    def _close(self, conn: TcpConnection) -> None:
        with conn.lock:
            if conn.closed:
                return
            conn.closed = True
        self.connections.pop(conn.sock.fileno(), None)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()


class DNSServer:
    """Binds UDP and TCP on one address and port; start() and stop()."""

    def __init__(self, resolver: Resolver, stats: EngineStats, host: str, port: int, *, loop: IoLoop,
                 tcp_max_connections: int = 256, tcp_idle_timeout: float = 10.0) -> None:  # fmt: skip
        self.resolver = resolver
        self.stats = stats
        self.host = host
        self.port = port
        self.loop = loop
        self._udp_transport: UdpTransport | None = None
        self.tcp_max_connections = tcp_max_connections
        self.tcp_idle_timeout = tcp_idle_timeout
        self._threads: list[threading.Thread] = []
        self.udp_sock: socket.socket | None = None
        self.tcp: TcpListener | None = None

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
            self.tcp = TcpListener(tcp, self.resolver, self.stats, self.tcp_max_connections, self.tcp_idle_timeout)
        return self.port

    def start(self) -> None:
        self.bind()
        udp = self.udp_sock
        udp.setblocking(False)
        self._udp_transport = UdpTransport(udp)
        self.loop.add_reader(udp, self._on_udp_readable)
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

    def stop_receiving(self) -> None:
        """Stop reading queries; UDP replies can still be sent until close()."""
        if self._udp_transport is not None:
            self.loop.remove_reader(self.udp_sock)
        if self.tcp is not None:
            self.tcp.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def close(self) -> None:
        if self.udp_sock is not None:
            self.udp_sock.close()
        if self.tcp is not None:
            self.tcp.sock.close()

    def stop(self) -> None:
        """Stop accepting queries and close the sockets."""
        self.stop_receiving()
        self.close()
