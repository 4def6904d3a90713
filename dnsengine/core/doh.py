"""DNS over HTTPS for the clients (RFC 8484): `/dns-query` over HTTP/1.1 on the TLS listener.

Served by the engine itself, not the web process: the client is the TCP peer, so the
access control, the rate limit and the client's group apply exactly as over UDP, with
no side channel between the processes (docs/encrypted-dns.md says more). The
connection handling is `tls.TlsListener`'s (bounds, handshakes, idle timeout) with HTTP
in place of the length prefix; `h11` parses HTTP without doing I/O, so this thread
still owns every socket.

- GET `/dns-query?dns=<base64url, no padding>` and POST `/dns-query` with
  `Content-Type: application/dns-message`; the answer is `application/dns-message`
  with `Cache-Control: max-age=<the answer's smallest TTL>`.
- 400 for a malformed request, 404 for another path, 405 for another method, 413 past
  `max_request` bytes of DNS message, 415 for a POST of another type; each of these
  closes the connection. HTTP/1.1 keep-alive; one request at a time per connection (a
  pipelined one waits in h11's buffer, which is bounded by not reading meanwhile).
- `X-Forwarded-For` names the client only when the peer is one of `trusted_proxies`:
  the right-most address that is not itself a trusted proxy.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import threading
import time
from urllib.parse import parse_qs

import h11

from dnsengine.core import wire
from dnsengine.core.access import Network
from dnsengine.core.resolver import Resolver
from dnsengine.core.server import TcpConnection, TcpListener
from dnsengine.core.stats import EngineStats
from dnsengine.core.tls import TlsCertificate, TlsConnection, TlsListener

DOH_PATH = "/dns-query"
DNS_MESSAGE = b"application/dns-message"
# Request line and headers of one request; h11 answers past it with an error (400 here).
MAX_HEAD = 16384
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_REASONS = {400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
            413: b"Content Too Large", 415: b"Unsupported Media Type"}  # fmt: skip


class DohConnection(TlsConnection):
    """One HTTPS client: the h11 state, the request being read and the client it speaks for."""

    __slots__ = ("body", "client", "http")

    proto = "doh"

    def __init__(self, sock, peer: str, listener: TcpListener, now: float) -> None:
        super().__init__(sock, peer, listener, now)
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.body = bytearray()
        self.client = peer  # the peer, or the client its X-Forwarded-For names

    def send(self, reply: bytes, addr=None) -> None:
        # The HTTP response is built on the listener's thread, which alone touches `http`.
        listener = self.listener
        if threading.get_ident() == listener.thread_ident:
            listener.deliver(self, reply)
        else:
            listener.post(self, reply)


class DohListener(TlsListener):
    kind = "doh"
    pipeline = 1  # HTTP/1.1 answers in order: one request handled at a time

    def __init__(self, sock: socket.socket, resolver: Resolver, stats: EngineStats, certificate: TlsCertificate,
                 max_connections: int, idle_timeout: float, max_per_client: int | None = None,
                 handshake_timeout: float = 5.0, *, max_request: int = 4096,
                 trusted_proxies: tuple[Network, ...] = ()) -> None:  # fmt: skip
        super().__init__(sock, resolver, stats, certificate, max_connections, idle_timeout, max_per_client,
                         handshake_timeout)  # fmt: skip
        self.max_request = max_request
        self.trusted_proxies = trusted_proxies

    def _connection_class(self) -> type[TlsConnection]:
        return DohConnection

    # -- requests -----------------------------------------------------------------------

    def _handle_buffered(self, conn: TcpConnection, now: float) -> None:
        http = conn.http
        if conn.inbuf:
            http.receive_data(bytes(conn.inbuf))
            conn.inbuf.clear()
        while not conn.closed and not conn.outstanding:
            if http.our_state is h11.DONE and http.their_state is h11.DONE:
                http.start_next_cycle()
            elif http.our_state is h11.MUST_CLOSE or http.their_state in (h11.MUST_CLOSE, h11.CLOSED):
                conn.read_closed = True
                break
            try:
                event = http.next_event()
            except h11.RemoteProtocolError:
                self._fail(conn, 400, "malformed HTTP request")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Request):
                problem = self._start(conn, event)
                if problem is not None:
                    self._fail(conn, *problem)
                    return
            elif isinstance(event, h11.Data):
                conn.body += event.data
                if len(conn.body) > self.max_request:
                    self._fail(conn, 413, "DNS message too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._ask(conn)
            elif isinstance(event, h11.ConnectionClosed):
                conn.read_closed = True
                break
        # A request begun and not finished counts toward the idle timeout from its start.
        unfinished = not conn.outstanding and (http.their_state is h11.SEND_BODY or http.trailing_data[0])
        if not unfinished:
            conn.partial_since = None
        elif conn.partial_since is None:
            conn.partial_since = now

    def _start(self, conn: DohConnection, request: h11.Request) -> tuple[int, str] | None:
        """Check a request's head; the error to answer, or None with the GET's message in `body`."""
        conn.body = bytearray()
        path, _, query = request.target.decode("ascii", "replace").partition("?")
        if path != DOH_PATH:
            return 404, f"DNS over HTTPS is at {DOH_PATH}"
        client = self._client(conn.peer, request.headers)
        if client is None:
            return 400, "malformed X-Forwarded-For"
        conn.client = client
        if request.method == b"POST":
            ctype = b""
            length = 0
            for name, value in request.headers:
                if name == b"content-type":
                    ctype = value.split(b";")[0].strip().lower()
                elif name == b"content-length":
                    length = int(value)  # h11 has checked it is a number
            if ctype != DNS_MESSAGE:
                return 415, "POST needs Content-Type: application/dns-message"
            if length > self.max_request:
                return 413, "DNS message too large"
            return None
        if request.method != b"GET":
            return 405, "GET or POST"
        try:
            values = parse_qs(query, keep_blank_values=True, max_num_fields=16).get("dns")
        except ValueError:
            return 400, "malformed query string"
        if not values or len(values) != 1:
            return 400, "GET needs one dns= parameter"
        raw = values[0]
        if len(raw) > (self.max_request * 4 + 2) // 3 + 2:
            return 413, "DNS message too large"
        if not _BASE64URL.fullmatch(raw):
            return 400, "dns= is not base64url"
        raw = raw.rstrip("=")
        try:
            conn.body = bytearray(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError):
            return 400, "dns= is not base64url"
        return None

    def _client(self, peer: str, headers) -> str | None:
        """The client a request speaks for: the peer, unless a trusted proxy names another; None if malformed."""
        trusted = self.trusted_proxies
        if not trusted or not _within(peer, trusted):
            return peer
        hops = [hop.strip() for name, value in headers if name == b"x-forwarded-for"
                for hop in value.decode("latin-1").split(",")]  # fmt: skip
        client = peer
        for hop in reversed(hops):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return None
            client = str(address)
            if not any(address in network for network in trusted):
                break
        return client

    def _ask(self, conn: DohConnection) -> None:
        message = bytes(conn.body)
        conn.body = bytearray()
        if len(message) < 12:
            self._fail(conn, 400, "not a DNS message")
            return
        conn.outstanding += 1
        try:
            answered = self.resolver.handle(message, conn.client, conn, None)
        except BaseException:
            conn.outstanding -= 1
            raise
        if not answered:
            conn.outstanding -= 1
            if not conn.closed:
                self._fail(conn, 403, "no answer for this client")

    # -- responses ----------------------------------------------------------------------

    def deliver(self, conn: TcpConnection, payload: bytes) -> None:
        """An answer for `conn`'s request (listener thread only): sent as the HTTP response."""
        if conn.closed:
            return
        response = self._response(conn, 200, DNS_MESSAGE, payload, [(b"cache-control", _max_age(payload))])
        if response is None:
            if conn.outstanding:
                conn.outstanding -= 1
            self._close(conn)
            return
        super().deliver(conn, response)
        if not conn.closed and not self._handling and not conn.read_closed:
            self._handle_messages(conn, time.monotonic())  # a request that came while this one was answered
            self._settle(conn)

    def _fail(self, conn: DohConnection, status: int, text: str) -> None:
        self.stats.count(f"doh_http_{status}")
        headers = [(b"connection", b"close")]
        if status == 405:
            headers.append((b"allow", b"GET, POST"))
        response = self._response(conn, status, b"text/plain; charset=utf-8", text.encode() + b"\n", headers)
        conn.read_closed = True  # no more requests on this connection: close once the answer is out
        if response:
            conn.outbuf += response
            self._flush(conn)

    def _response(self, conn: DohConnection, status: int, ctype: bytes, body: bytes, headers: list) -> bytes | None:
        http = conn.http
        head = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *headers]
        try:
            return b"".join(
                http.send(event) or b""
                for event in (
                    h11.Response(status_code=status, headers=head, reason=_REASONS.get(status, b"OK")),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                )
            )
        except h11.LocalProtocolError:  # the connection is in no state to answer (already failed)
            return None


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _max_age(reply: bytes) -> bytes:
    """RFC 8484 5.1: fresh for the smallest TTL of the answer (the negative TTL for no answer)."""
    try:
        scanned = wire.scan_reply(reply, wire.question_end(reply))
    except Exception:  # a reply the engine built: should not happen, and then nothing is cacheable
        return b"max-age=0"
    ttl = scanned.min_answer_ttl if scanned.min_answer_ttl is not None else scanned.negative_ttl
    return b"max-age=%d" % (ttl or 0)
