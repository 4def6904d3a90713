"""DNS over TLS to an upstream (RFC 7858): one kept-open, pipelined connection on the I/O loop.

`TlsConnection` owns one TCP socket to an upstream and runs TLS over it with
`ssl.MemoryBIO`: the socket is plain and non-blocking, the `SSLObject` only turns
bytes into bytes. So the handshake is driven by the loop's readiness events like
every other read and write, and the `dns-io` thread never blocks on it, without a
helper thread per connection or `SSLSocket`'s want-read/want-write retry rules
(asyncio's TLS works the same way).

The forwarder sends each query with its own random ID (`send(qid, message)`), any
number at once (RFC 7766 pipelining), and the replies come back in whatever order
the server answers, matched by the forwarder's pending table as UDP replies are:
the connection calls `on_reply(channel, reply)`. When the connection is lost or
cannot be made (refused, handshake timeout, a certificate not accepted), it calls
`on_lost(channel, why)`: the forwarder fails every query waiting on it over to the
next upstream. A new connection is opened by the next query, after a backoff
that doubles with each failure in a row (queries during the backoff fail over at
once). Everything here runs on the loop thread except `send`, which queues.

`HttpsConnection` (`upstream_https`) is the same connection with HTTP/2 framing.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

from dnsengine.core.ioloop import IoLoop
from dnsengine.core.options import Upstream
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog

logger = logging.getLogger(__name__)

# on_reply(channel, reply), on_lost(channel, why), on_failed(channel, qid, why): on the loop thread.
ReplyHandler = Callable[[int, bytes], None]
LostHandler = Callable[[int, str], None]
FailedHandler = Callable[[int, int, str], None]

BACKOFF_FIRST = 0.25
BACKOFF_MAX = 30.0
READ_CHUNK = 65536
# Replies bigger than a DNS message can be are a broken or hostile server.
MAX_MESSAGE = 65535

_CLOSED, _CONNECTING, _HANDSHAKE, _OPEN = range(4)


def client_context(ca_file: str = "", alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The system trust store (or only `ca_file`), hostname checked, TLS 1.2 or newer.

    `ssl.create_default_context()` honours SSL_CERT_FILE / SSL_CERT_DIR."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def spki_sha256(der: bytes) -> bytes:
    """SHA-256 of a DER certificate's SubjectPublicKeyInfo (what an RFC 7469 pin names).

    Walks the DER by hand: Certificate > TBSCertificate > [0] version, serial,
    signature, issuer, validity, subject, subjectPublicKeyInfo."""

    def element(pos: int) -> tuple[int, int, int]:  # (tag, content start, end)
        if pos + 2 > len(der):
            raise ValueError("truncated certificate")
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            if not 1 <= n <= 4 or pos + n > len(der):
                raise ValueError("bad DER length")
            length = int.from_bytes(der[pos : pos + n], "big")
            pos += n
        if pos + length > len(der):
            raise ValueError("truncated certificate")
        return tag, pos, pos + length

    _, cert_start, _ = element(0)
    _, field, tbs_end = element(cert_start)
    tag, _, end = element(field)
    if tag == 0xA0:  # explicit version
        field = end
    for _ in range(5):  # serial, signature, issuer, validity, subject
        _, _, field = element(field)
    if field >= tbs_end:
        raise ValueError("no public key in certificate")
    _, _, end = element(field)
    return hashlib.sha256(der[field:end]).digest()


class ServerClosed(Exception):
    """The server said it closes the connection (HTTP/2 GOAWAY): handled like its EOF."""


class TlsConnection:
    """One DNS-over-TLS connection to `upstream`, reopened as needed (see the module docstring)."""

    scheme = "tls"
    alpn: tuple[str, ...] = ()

    def __init__(
        self,
        upstream: Upstream,
        channel: int,
        loop: IoLoop,
        stats: EngineStats,
        timeout: float,
        on_reply: ReplyHandler,
        on_lost: LostHandler,
        on_failed: FailedHandler,
    ) -> None:
        self.upstream = upstream
        self.channel = channel
        self.timeout = timeout
        self.stats = stats
        self._loop = loop
        self._on_reply = on_reply
        self._on_lost = on_lost
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._outbox: list[tuple[int, bytes]] = []  # (qid, message) queued by send()
        self._flush_queued = False
        self._state = _CLOSED
        self._retry_at = 0.0  # no new connection before this (monotonic)
        self._backoff = 0.0
        self._sock: socket.socket | None = None
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._wbuf = bytearray()  # TLS records not yet taken by the socket
        self._writable_watched = False
        self._deadline = 0.0  # connect + handshake must be done by then
        # Queries written on this connection and not answered yet, by ID (so at most 65536),
        # and when the connection last showed progress: one that answers nothing for a
        # whole timeout while queries wait is taken for dead.
        self._sent: dict[int, bytes] = {}
        self._progress_at = 0.0
        self._answered = 0  # replies on this connection
        self.opens = 0
        # Made here, on the thread that builds the forwarder (start-up, or the config watcher
        # for a group's or a rule's upstreams): reading the trust store never stalls dns-io.
        self._context: ssl.SSLContext | None = None
        self._context_error = ""
        try:
            self._context = client_context(upstream.ca_file, self.alpn)
        except (OSError, ssl.SSLError) as exc:
            self._context_error = f"CA file {upstream.ca_file!r} not usable: {exc}"
            logger.error("upstream %s: %s; it will fail every query", upstream.label, self._context_error)
        # Its own, so that one upstream's refused certificate does not hide another's.
        self._refused_log = RateLimitedLog(logger, interval=10.0)
        self._rbuf = bytearray()

    # -- from any thread ----------------------------------------------------------------

    def send(self, qid: int, message: bytes) -> None:
        """Queue `message` (a DNS query with ID `qid`); raises OSError during a backoff,
        so that the forwarder moves on to the next upstream at once."""
        if self._state == _CLOSED and time.monotonic() < self._retry_at:
            raise OSError(errno.ECONNREFUSED, "connection failed recently, retrying later")
        with self._lock:
            self._outbox.append((qid, message))
            if self._flush_queued:
                return
            self._flush_queued = True
        self._loop.call_soon(self._flush)

    # -- on the loop thread ---------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self._state in (_CONNECTING, _HANDSHAKE) and now >= self._deadline:
            self._fail("no TLS connection within the timeout", failure=True)
        elif self._state == _OPEN and self._sent and now - self._progress_at > self.timeout:
            self._fail(f"no answer on the connection for {self.timeout}s", failure=True)

    def close(self) -> None:
        self._drop()
        with self._lock:
            self._outbox.clear()

    def _flush(self) -> None:
        with self._lock:
            self._flush_queued = False
            if not self._outbox:
                return
            if self._state != _OPEN:
                if self._state == _CLOSED:
                    self._connect()
                return
            batch, self._outbox = self._outbox, []
        self._write_queries(batch)
        self._write_out()

    def _connect(self) -> None:
        """Called with self._lock held and queries waiting."""
        now = time.monotonic()
        if now < self._retry_at:
            self._loop.call_soon(lambda: self._fail("connection failed recently, retrying later", failure=False))
            return
        context = self._context
        if context is None:
            self._loop.call_soon(lambda: self._fail(self._context_error, failure=True))
            return
        sock = socket.socket(self.upstream.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex((self.upstream.host, self.upstream.port))
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._wbuf.clear()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=self.upstream.server_name)
        self._state = _CONNECTING
        self._deadline = now + self.timeout
        self._writable_watched = True
        self._loop.watch(sock, self._on_event, writable=True)
        if err not in (0, errno.EINPROGRESS):
            self._loop.call_soon(lambda: self._fail(f"connect: {errno.errorcode.get(err, err)}", failure=True))

    def _on_event(self, sock: socket.socket) -> None:
        if sock is not self._sock:
            return
        if self._state == _CONNECTING:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(f"connect: {errno.errorcode.get(err, err)}", failure=True)
                return
            self._state = _HANDSHAKE
        if not self._read():
            return
        if self._state == _HANDSHAKE:
            self._handshake()
            if self._state == _OPEN and not self._read():  # data that came with the handshake
                return
        self._write_out()

    def _read(self) -> bool:
        """Take what the socket has; False when the connection is gone."""
        sock = self._sock
        eof = False
        while sock is not None:
            try:
                data = sock.recv(READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(f"connection: {exc}", failure=True)
                return False
            if not data:
                eof = True  # after what came before it is read
                break
            self._incoming.write(data)
            if len(data) < READ_CHUNK:
                break
        if self._state != _OPEN:
            if eof:
                self._eof()
                return False
            return True
        chunks = []
        while True:
            try:
                chunk = self._tls.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            except ssl.SSLError as exc:
                self._fail(f"TLS: {exc}", failure=True)
                return False
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
        if chunks:
            self._progress_at = time.monotonic()
            try:
                self._received(b"".join(chunks))
            except ServerClosed:
                eof = True
            except ValueError as exc:  # a protocol violation by the server
                self._fail(str(exc), failure=True)
                return False
        if eof and self._sock is not None:
            self._eof()
            return False
        return self._sock is not None

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLCertVerificationError as exc:
            self._refuse(f"certificate not accepted: {exc.verify_message or exc}")
            return
        except ssl.SSLError as exc:
            self._fail(f"TLS handshake: {exc.reason or exc}", failure=True)
            return
        if self.upstream.spki:
            der = self._tls.getpeercert(binary_form=True)
            try:
                pin = spki_sha256(der) if der else b""
            except ValueError:
                pin = b""
            if pin not in self.upstream.spki:
                self._refuse("certificate's public key matches no spki= pin")
                return
        if self.alpn and self._tls.selected_alpn_protocol() not in self.alpn:
            self._fail(f"server does not speak {'/'.join(self.alpn)} (ALPN)", failure=True)
            return
        self._state = _OPEN
        self._backoff = 0.0
        self._sent = {}
        self._answered = 0
        self._progress_at = time.monotonic()
        self.opens += 1
        self.stats.count(f"upstream_{self.scheme}_connects")
        self._opened()
        with self._lock:
            batch, self._outbox = self._outbox, []
        if batch:
            self._write_queries(batch)

    def _refuse(self, why: str) -> None:
        self.stats.count(f"upstream_{self.scheme}_verify_failures")
        self._refused_log.warning("upstream %s: %s; not used until it verifies", self.upstream.label, why)
        self._fail(why, failure=True)

    def _write_out(self) -> None:
        """Move TLS records to the socket; watch for writability while some are left."""
        sock = self._sock
        if sock is None:
            return
        pending = self._outgoing.read()
        if pending:
            self._wbuf += pending
        if self._wbuf and self._state != _CONNECTING:
            try:
                sent = sock.send(self._wbuf)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._fail(f"send: {exc}", failure=True)
                return
            del self._wbuf[:sent]
        want = bool(self._wbuf) or self._state == _CONNECTING
        if want != self._writable_watched:
            self._writable_watched = want
            self._loop.watch(sock, self._on_event, writable=want)

    def _send_plain(self, data: bytes) -> None:
        self._tls.write(data)

    def _eof(self) -> None:
        """The server closed the connection: after an idle timeout (unbound's tcp-idle-timeout),
        a restart, or as its way to refuse us.

        A connection that had answered is not a failure: the queries it did not answer yet
        (one that raced the close, say) go again on a new one at once, as RFC 7766 asks.
        A connection closed before it answered anything fails its queries over."""
        if self._state == _OPEN and self._answered:
            self._resend_on_new_connection()
            return
        self._fail("connection closed by the server", failure=True)

    def _resend_on_new_connection(self) -> None:
        """Close this connection; what it had not answered (or not sent) goes first on a new one."""
        again = [*self._sent.items(), *self._unsent()]
        self._drop()
        if again:
            self.stats.count(f"upstream_{self.scheme}_resent", len(again))
            with self._lock:
                self._outbox[:0] = again
                self._connect()

    def _fail(self, why: str, failure: bool) -> None:
        if failure:
            self._backoff = min(max(self._backoff * 2, BACKOFF_FIRST), BACKOFF_MAX)
            self._retry_at = time.monotonic() + self._backoff
            if self._state == _OPEN:
                self.stats.count(f"upstream_{self.scheme}_connection_lost")
        self._drop()
        with self._lock:
            self._outbox.clear()
        self._on_lost(self.channel, why)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._state = _CLOSED
        self._tls = None
        self._sent = {}
        self._wbuf.clear()
        self._closed()
        if sock is not None:
            self._loop.remove_reader(sock)
            sock.close()

    # -- the DNS framing (HttpsConnection replaces these) ---------------------------------

    def _opened(self) -> None:
        self._rbuf = bytearray()

    def _unsent(self) -> list[tuple[int, bytes]]:
        """Queries taken from the outbox but not written yet (HTTP/2 waits for free streams)."""
        return []

    def _closed(self) -> None:
        self._rbuf = bytearray()

    def _write_queries(self, batch: list[tuple[int, bytes]]) -> None:
        """RFC 7766: each message after its two-byte length, all in one TLS write."""
        self._note_sent(batch)
        self._send_plain(b"".join(struct.pack("!H", len(m)) + m for _, m in batch))

    def _note_sent(self, batch: list[tuple[int, bytes]]) -> None:
        if not self._sent:
            self._progress_at = time.monotonic()  # the silence counts from now, not from the last reply
        self._sent.update(batch)

    def _received(self, data: bytes) -> None:
        buf = self._rbuf
        buf += data
        pos = 0
        while len(buf) - pos >= 2:
            size = buf[pos] << 8 | buf[pos + 1]
            if len(buf) - pos - 2 < size:
                break
            reply = bytes(buf[pos + 2 : pos + 2 + size])
            pos += 2 + size
            if len(reply) >= 2:
                self._sent.pop(reply[0] << 8 | reply[1], None)
            self._answered += 1
            self._on_reply(self.channel, reply)
            if self._sock is None:  # the handler closed us (stop)
                return
        del buf[:pos]
