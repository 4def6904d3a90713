"""DNS over TLS for the clients (RFC 7858): the TCP listener with a TLS layer, and its certificate.

The listener is `server.TcpListener` on a thread of its own (`dns-dot`), so it keeps the
plain TCP bounds as they are: connection count in all and per client, the idle
timeout, RFC 7766 framing, pipelined queries answered as they complete, a bounded
output buffer. What TLS adds:

- Handshakes are driven by readiness on non-blocking sockets, never waited for: a
  connection is watched for what OpenSSL wants next (read or write), and one that has
  not finished its handshake within `handshake_timeout` seconds is closed.
- The certificate and key (`TlsCertificate`) are reloaded when either file changes
  (checked every few seconds) or when asked (SIGHUP): new connections get the new
  context, the open ones keep theirs. A pair that does not load is logged and the
  previous one kept.
- TLS 1.2 or newer; no compression, no renegotiation.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import threading
import time

from dnsengine.core.resolver import Resolver
from dnsengine.core.server import TcpConnection, TcpListener
from dnsengine.core.stats import EngineStats

logger = logging.getLogger(__name__)

# Bytes given to one SSL write: one TLS record, so a retry after "want write" passes the
# same leading bytes OpenSSL already took (with a moving buffer, which Python allows).
TLS_WRITE_CHUNK = 16384
# Records read in one pass over a connection before the others get their turn.
TLS_READS_PER_PASS = 16


class TlsCertificate:
    """A certificate chain and key, loaded into a server `SSLContext`, reloaded when they change.

    `context()` is called on the listener's thread only; `request_reload()` from any
    thread (the SIGHUP handler's).
    """

    def __init__(self, cert_path: str, key_path: str, *, alpn: tuple[str, ...] = (),
                 check_interval: float = 5.0) -> None:  # fmt: skip
        self.cert_path = cert_path
        self.key_path = key_path
        self.alpn = alpn
        self.check_interval = check_interval
        self.reloads = 0
        self._stamp = self._files_stamp()
        self._context = self._load()  # a pair that does not load stops the start, with the error
        self._reload_requested = False
        self._next_check = time.monotonic() + check_interval

    def request_reload(self) -> None:
        self._reload_requested = True

    def context(self, now: float) -> ssl.SSLContext:
        """The context for a new connection: the files' current pair, or the last one that loaded."""
        if self._reload_requested or now >= self._next_check:
            self._next_check = now + self.check_interval
            forced, self._reload_requested = self._reload_requested, False
            stamp = self._files_stamp()
            if forced or stamp != self._stamp:
                self._stamp = stamp  # a bad pair is logged once, not at every check
                try:
                    self._context = self._load()
                except (OSError, ValueError, ssl.SSLError) as exc:
                    logger.warning("TLS certificate %s / key %s not reloaded, keeping the previous one: %s",
                                   self.cert_path, self.key_path, exc)  # fmt: skip
                else:
                    self.reloads += 1
                    logger.info("TLS certificate reloaded from %s", self.cert_path)
        return self._context

    def _files_stamp(self) -> tuple:
        stamp = []
        for path in (self.cert_path, self.key_path):
            try:
                st = os.stat(path)
            except OSError:
                stamp.append(None)
            else:
                stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamp)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        context.load_cert_chain(self.cert_path, self.key_path)
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        return context


class TlsConnection(TcpConnection):
    """A client connection whose socket is an `ssl.SSLSocket`, handshake first."""

    __slots__ = ("accepted", "handshaking", "want_write")

    proto = "dot"

    def __init__(self, sock: ssl.SSLSocket, peer: str, listener: TcpListener, now: float) -> None:
        super().__init__(sock, peer, listener, now)
        self.accepted = now
        self.handshaking = True
        self.want_write = False  # what the handshake waits for: the socket writable, else readable


class TlsListener(TcpListener):
    """DNS over TLS: the TCP listener's bounds, each connection behind a TLS handshake."""

    kind = "dot"

    def __init__(self, sock: socket.socket, resolver: Resolver, stats: EngineStats, certificate: TlsCertificate,
                 max_connections: int, idle_timeout: float, max_per_client: int | None = None,
                 handshake_timeout: float = 5.0) -> None:  # fmt: skip
        super().__init__(sock, resolver, stats, max_connections, idle_timeout, max_per_client)
        self.certificate = certificate
        self.handshake_timeout = handshake_timeout

    def _connection_class(self) -> type[TlsConnection]:
        return TlsConnection

    def _connection_new(self, client: socket.socket, peer: str, now: float) -> TlsConnection | None:
        try:
            tls = self.certificate.context(now).wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError):
            client.close()
            return None
        return self._connection_class()(tls, peer, self, now)

    def _opened(self, conn: TcpConnection) -> None:
        self._handshake(conn)  # the ClientHello is often there already

    def _dispatch(self, key, events) -> None:
        conn = key.data
        if isinstance(conn, TlsConnection) and conn.handshaking:
            if not conn.closed:
                self._handshake(conn)
            return
        super()._dispatch(key, events)

    def _handshake(self, conn: TlsConnection) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.want_write = False
        except ssl.SSLWantWriteError:
            conn.want_write = True
        except (OSError, ValueError) as exc:  # SSLError included: a bad hello, an unknown CA, a reset
            logger.debug("TLS handshake with %s failed: %s", conn.peer, exc)
            self.stats.count(f"{self.kind}_handshake_failures")
            self._close(conn)
            return
        else:
            conn.handshaking = False
            conn.last_activity = time.monotonic()
            self.stats.count(f"{self.kind}_handshakes")
            self._handshaken(conn)
            self._read(conn)  # the first query may have come with the handshake's end
            return
        self._settle(conn)

    def _handshaken(self, conn: TlsConnection) -> None:
        """The handshake is done (the negotiated ALPN protocol is known)."""

    def _settle(self, conn: TcpConnection) -> None:
        if isinstance(conn, TlsConnection) and conn.handshaking:
            if not conn.closed:
                self._watch(conn, selectors.EVENT_WRITE if conn.want_write else selectors.EVENT_READ)
            return
        super()._settle(conn)

    def _read(self, conn: TcpConnection) -> None:
        got = False
        for _ in range(TLS_READS_PER_PASS):
            try:
                data = conn.sock.recv(65537)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (OSError, ValueError):
                self._close(conn)
                return
            if not data:  # close_notify or EOF
                conn.read_closed = True
                break
            conn.last_activity = time.monotonic()
            conn.inbuf += data
            got = True
            # Decrypted bytes OpenSSL holds are not in the kernel's buffer: the selector
            # would not wake for them, so read them now.
            if not conn.sock.pending():
                break
        if got:
            self._handle_messages(conn, time.monotonic())
        self._settle(conn)

    def _flush(self, conn: TcpConnection) -> None:
        if not conn.outbuf or conn.closed:
            return
        try:
            sent = conn.sock.send(conn.outbuf[:TLS_WRITE_CHUNK])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except (OSError, ValueError):
            self._close(conn)
            return
        del conn.outbuf[:sent]
        conn.last_activity = time.monotonic()

    def _sweep_idle(self, now: float) -> None:
        self.certificate.context(now)  # notices changed files even while nobody connects
        for conn in list(self.connections.values()):
            if isinstance(conn, TlsConnection) and conn.handshaking and now - conn.accepted > self.handshake_timeout:
                self.stats.count(f"{self.kind}_handshake_timeouts")
                self._close(conn)
        super()._sweep_idle(now)


class TlsServer:
    """Binds one TCP port for an encrypted listener and runs it on its own thread."""

    def __init__(self, listener_class: type[TlsListener], resolver: Resolver, stats: EngineStats, host: str,
                 port: int, certificate: TlsCertificate, *, thread_name: str, max_connections: int,
                 idle_timeout: float, max_per_client: int | None, handshake_timeout: float,
                 **extra) -> None:  # fmt: skip
        self.listener_class = listener_class
        self.resolver = resolver
        self.stats = stats
        self.host = host
        self.port = port
        self.certificate = certificate
        self.thread_name = thread_name
        self.limits = (max_connections, idle_timeout, max_per_client, handshake_timeout)
        self.extra = extra
        self.listener: TlsListener | None = None
        self._thread: threading.Thread | None = None
        self.reuse_port = False  # as DNSServer.reuse_port

    def bind(self) -> int:
        if self.listener is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((self.host, self.port))
                sock.listen(128)
            except OSError:
                sock.close()
                raise
            self.port = sock.getsockname()[1]
            max_connections, idle_timeout, max_per_client, handshake_timeout = self.limits
            self.listener = self.listener_class(sock, self.resolver, self.stats, self.certificate, max_connections,
                                                idle_timeout, max_per_client, handshake_timeout,
                                                **self.extra)  # fmt: skip
        return self.port

    def start(self) -> None:
        self.bind()
        self._thread = threading.Thread(target=self.listener.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop_receiving(self) -> None:
        if self.listener is not None:
            self.listener.stop_reading()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self.listener.sock.close()
