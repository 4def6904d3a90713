"""DNS over HTTPS for the clients (RFC 8484): `/dns-query` over HTTP/2 or HTTP/1.1 on the TLS listener.

Served by the engine itself, not the web process: the client is the TCP peer, so the
access control, the rate limit and the client's group apply exactly as over UDP, with
no side channel between the processes (docs/encrypted-dns.md says more). The
connection handling is `tls.TlsListener`'s (bounds, handshakes, idle timeout) with HTTP
in place of the length prefix. `h2` and `h11` are HTTP state machines that do no I/O,
so this thread still owns every socket; ALPN picks the version (browsers and kdig
speak HTTP/2).

- GET `/dns-query?dns=<base64url, no padding>` and POST `/dns-query` with
  `Content-Type: application/dns-message`; the answer is `application/dns-message`
  with `Cache-Control: max-age=<the answer's smallest TTL>`.
- 400 for a malformed request, 403 when the engine sends no answer (refused clients
  with GLORYHOLE_REFUSED_CLIENTS_ACTION=drop), 404 for another path, 405 for another
  method, 413 past `max_request` bytes of DNS message, 415 for a POST of another type.
  Over HTTP/1.1 each of these closes the connection; over HTTP/2 only that stream ends.
- HTTP/1.1: keep-alive, one request at a time per connection (a pipelined one waits in
  h11's buffer, bounded by not reading meanwhile). HTTP/2: up to the listener's
  pipeline limit of streams at once (SETTINGS_MAX_CONCURRENT_STREAMS), each request's
  body bounded, answers sent as they complete, flow control respected.
- `X-Forwarded-For` names the client only when the peer is one of `trusted_proxies`:
  the right-most address that is not itself a trusted proxy.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import h11
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset, WindowUpdated
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes, Settings

from dnsengine.core import wire
from dnsengine.core.access import Network
from dnsengine.core.resolver import Resolver
from dnsengine.core.server import MAX_TCP_OUTBUF, TcpConnection, TcpListener
from dnsengine.core.stats import EngineStats
from dnsengine.core.tls import TlsCertificate, TlsConnection, TlsListener

logger = logging.getLogger(__name__)

DOH_PATH = "/dns-query"
DNS_MESSAGE = b"application/dns-message"
# Request line and headers of one request; h11 answers past it with an error (400 here).
MAX_HEAD = 16384
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_REASONS = {400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
            413: b"Content Too Large", 415: b"Unsupported Media Type"}  # fmt: skip


@dataclass(slots=True)
class _Stream:
    """An HTTP/2 request being read: its DNS message so far and the client it speaks for."""

    body: bytearray
    client: str


class DohConnection(TlsConnection):
    """One HTTPS client: HTTP/1.1 (`http`, h11) or HTTP/2 (`h2`, chosen by ALPN) and its requests."""

    __slots__ = ("body", "client", "h2", "http", "pending", "streams")

    proto = "doh"

    def __init__(self, sock, peer: str, listener: TcpListener, now: float) -> None:
        super().__init__(sock, peer, listener, now)
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.body = bytearray()
        self.client = peer  # the peer, or the client its X-Forwarded-For names
        self.h2: H2Connection | None = None
        self.streams: dict[int, _Stream] = {}  # HTTP/2 requests not read to their end yet
        self.pending: dict[int, bytes] = {}  # HTTP/2 response bodies the flow-control window holds back

    def send(self, reply: bytes, addr=None) -> None:
        # The HTTP response is built on the listener's thread, which alone touches the
        # HTTP state. `addr` is the HTTP/2 stream (None over HTTP/1.1).
        listener = self.listener
        if threading.get_ident() == listener.thread_ident:
            listener.deliver(self, (addr, reply))
        else:
            listener.post(self, (addr, reply))


class DohListener(TlsListener):
    kind = "doh"

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

    def _room(self, conn: TcpConnection) -> bool:
        # HTTP/1.1 answers in order: one request at a time, and the next is not read
        # meanwhile, which bounds h11's buffer. HTTP/2 streams: up to the pipeline limit.
        return conn.outstanding < (self.pipeline if conn.h2 is not None else 1)

    def _handshaken(self, conn: DohConnection) -> None:
        if conn.sock.selected_alpn_protocol() != "h2":
            return
        h2 = H2Connection(config=H2Configuration(client_side=False, header_encoding=None))
        h2.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: self.pipeline, SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD,
        })  # fmt: skip
        h2.initiate_connection()
        conn.h2 = h2
        self._h2_flush(conn)

    def _handle_buffered(self, conn: TcpConnection, now: float) -> None:
        if conn.h2 is not None:
            self._h2_receive(conn)
            unfinished = bool(conn.streams)
        else:
            self._h1_receive(conn)
            http = conn.http
            unfinished = http.their_state is h11.SEND_BODY or bool(http.trailing_data[0])
        # A request begun and not finished counts toward the idle timeout from its start.
        if not unfinished or conn.outstanding:
            conn.partial_since = None
        elif conn.partial_since is None:
            conn.partial_since = now

    # -- checks both HTTP versions share -----------------------------------------------

    def _check(self, conn: DohConnection, method: bytes | None, target: bytes, headers) -> tuple[int, str] | bytes:
        """A request's head: the error to answer, or the GET's DNS message (b"" for a POST)."""
        path, _, query = target.decode("ascii", "replace").partition("?")
        if path != DOH_PATH:
            return 404, f"DNS over HTTPS is at {DOH_PATH}"
        client = self._client(conn.peer, headers)
        if client is None:
            return 400, "malformed X-Forwarded-For"
        conn.client = client
        if method == b"POST":
            ctype = b""
            length = 0
            for name, value in headers:
                if name == b"content-type":
                    ctype = value.split(b";")[0].strip().lower()
                elif name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        return 400, "malformed Content-Length"
            if ctype != DNS_MESSAGE:
                return 415, "POST needs Content-Type: application/dns-message"
            if length > self.max_request:
                return 413, "DNS message too large"
            return b""
        if method != b"GET":
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
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            return 400, "dns= is not base64url"

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

    def _ask(self, conn: DohConnection, message: bytes, client: str, stream: int | None) -> bool:
        """Hand one DNS message to the resolver; False (nothing will come) when it is not answered."""
        conn.outstanding += 1
        try:
            answered = self.resolver.handle(message, client, conn, stream)
        except BaseException:
            conn.outstanding -= 1
            raise
        if not answered:
            conn.outstanding -= 1
        return answered

    def deliver(self, conn: TcpConnection, payload) -> None:
        """An answer for one of `conn`'s requests (listener thread only): sent as its HTTP response."""
        if conn.closed:
            return
        stream, reply = payload
        headers = [(b"cache-control", _max_age(reply))]
        if conn.h2 is not None:
            if conn.outstanding:
                conn.outstanding -= 1
            self._h2_respond(conn, stream, 200, DNS_MESSAGE, reply, headers)
            self._h2_flush(conn)
            if not conn.closed:
                self._settle(conn)
            return
        response = self._h1_response(conn, 200, DNS_MESSAGE, reply, headers)
        if response is None:
            if conn.outstanding:
                conn.outstanding -= 1
            self._close(conn)
            return
        super().deliver(conn, response)
        if not conn.closed and not self._handling and not conn.read_closed:
            self._handle_messages(conn, time.monotonic())  # a request that came while this one was answered
            self._settle(conn)

    # -- HTTP/1.1 -------------------------------------------------------------------------

    def _h1_receive(self, conn: DohConnection) -> None:
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
                self._h1_fail(conn, 400, "malformed HTTP request")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Request):
                checked = self._check(conn, event.method, event.target, event.headers)
                if isinstance(checked, tuple):
                    self._h1_fail(conn, *checked)
                    return
                conn.body = bytearray(checked)
            elif isinstance(event, h11.Data):
                conn.body += event.data
                if len(conn.body) > self.max_request:
                    self._h1_fail(conn, 413, "DNS message too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                message, conn.body = bytes(conn.body), bytearray()
                if len(message) < 12:
                    self._h1_fail(conn, 400, "not a DNS message")
                    return
                if not self._ask(conn, message, conn.client, None) and not conn.closed:
                    self._h1_fail(conn, 403, "no answer for this client")
                    return
            elif isinstance(event, h11.ConnectionClosed):
                conn.read_closed = True
                break

    def _h1_fail(self, conn: DohConnection, status: int, text: str) -> None:
        self.stats.count(f"doh_http_{status}")
        headers = [(b"connection", b"close")]
        if status == 405:
            headers.append((b"allow", b"GET, POST"))
        response = self._h1_response(conn, status, b"text/plain; charset=utf-8", text.encode() + b"\n", headers)
        conn.read_closed = True  # no more requests on this connection: close once the answer is out
        if response:
            conn.outbuf += response
            self._flush(conn)

    def _h1_response(self, conn: DohConnection, status: int, ctype: bytes, body: bytes,
                     headers: list) -> bytes | None:  # fmt: skip
        http = conn.http
        head = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *headers]
        try:
            response = h11.Response(status_code=status, headers=head, reason=_REASONS.get(status, b"OK"))
            return b"".join(http.send(event) or b"" for event in (response, h11.Data(data=body), h11.EndOfMessage()))
        except h11.LocalProtocolError:  # the connection is in no state to answer (already failed)
            return None

    # -- HTTP/2 ---------------------------------------------------------------------------

    def _h2_receive(self, conn: DohConnection) -> None:
        h2 = conn.h2
        data, conn.inbuf = bytes(conn.inbuf), bytearray()
        try:
            for event in h2.receive_data(data) if data else ():
                if conn.closed:
                    return
                if isinstance(event, RequestReceived):
                    self._h2_request(conn, event)
                elif isinstance(event, DataReceived):
                    h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    stream = conn.streams.get(event.stream_id)
                    if stream is not None:
                        stream.body += event.data
                        if len(stream.body) > self.max_request:
                            self._h2_fail(conn, event.stream_id, 413, "DNS message too large")
                elif isinstance(event, StreamEnded):
                    stream = conn.streams.pop(event.stream_id, None)
                    if stream is not None:
                        self._h2_ask(conn, event.stream_id, stream)
                elif isinstance(event, StreamReset):
                    conn.streams.pop(event.stream_id, None)
                    conn.pending.pop(event.stream_id, None)
                elif isinstance(event, WindowUpdated):
                    for stream_id in list(conn.pending):
                        self._h2_push(conn, stream_id)
                elif isinstance(event, ConnectionTerminated):
                    conn.read_closed = True
        except H2ProtocolError as exc:  # h2 has queued a GOAWAY saying why
            self.stats.count("doh_h2_errors")
            logger.debug("HTTP/2 error from %s: %s", conn.peer, exc)
            conn.read_closed = True
            conn.streams.clear()
        self._h2_flush(conn)

    def _h2_request(self, conn: DohConnection, event: RequestReceived) -> None:
        pseudo = {name: value for name, value in event.headers if name.startswith(b":")}
        headers = [(name, value) for name, value in event.headers if not name.startswith(b":")]
        checked = self._check(conn, pseudo.get(b":method"), pseudo.get(b":path", b""), headers)
        if isinstance(checked, tuple):
            self._h2_fail(conn, event.stream_id, *checked)
            return
        conn.streams[event.stream_id] = _Stream(bytearray(checked), conn.client)

    def _h2_ask(self, conn: DohConnection, stream_id: int, stream: _Stream) -> None:
        message = bytes(stream.body)
        if len(message) < 12:
            self._h2_fail(conn, stream_id, 400, "not a DNS message")
        elif not self._ask(conn, message, stream.client, stream_id) and not conn.closed:
            self._h2_fail(conn, stream_id, 403, "no answer for this client")

    def _h2_fail(self, conn: DohConnection, stream_id: int, status: int, text: str) -> None:
        """An error answer on one stream; the connection's other streams go on."""
        self.stats.count(f"doh_http_{status}")
        conn.streams.pop(stream_id, None)
        headers = [(b"allow", b"GET, POST")] if status == 405 else []
        self._h2_respond(conn, stream_id, status, b"text/plain; charset=utf-8", text.encode() + b"\n", headers)

    def _h2_respond(self, conn: DohConnection, stream_id: int, status: int, ctype: bytes, body: bytes,
                    headers: list) -> None:  # fmt: skip
        head = [(b":status", str(status).encode()), (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()), *headers]  # fmt: skip
        try:
            conn.h2.send_headers(stream_id, head)
        except H2ProtocolError:  # the client reset the stream meanwhile
            return
        conn.pending[stream_id] = body
        self._h2_push(conn, stream_id)

    def _h2_push(self, conn: DohConnection, stream_id: int) -> None:
        """Send what the flow-control window allows of a response body; the rest waits for a WINDOW_UPDATE."""
        h2 = conn.h2
        data = conn.pending.pop(stream_id)
        try:
            while True:
                room = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)
                if data and room <= 0:
                    conn.pending[stream_id] = data
                    return
                chunk, data = data[:room], data[room:]
                h2.send_data(stream_id, chunk, end_stream=not data)
                if not data:
                    return
        except H2ProtocolError:  # reset or closed meanwhile: nobody to send it to
            return

    def _h2_flush(self, conn: DohConnection) -> None:
        out = conn.h2.data_to_send()
        if not out:
            return
        if len(conn.outbuf) + len(out) > MAX_TCP_OUTBUF:
            self.stats.count(f"{self.kind}_slow_readers_closed")
            self._close(conn)
            return
        conn.outbuf += out
        self._flush(conn)


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
