"""DNS over HTTPS to an upstream (RFC 8484): HTTP/2 streams on one kept-open TLS connection.

The TLS connection, its handshake on the I/O loop, the verification, the backoff
and the failover are `upstream_tls.TlsConnection`'s; this module only frames:
each query is a POST of the wire message (`application/dns-message`) on its
own HTTP/2 stream, many at once on the one connection, as many as the server's
SETTINGS_MAX_CONCURRENT_STREAMS allows (the rest wait here for a stream to end).

Why HTTP/2 with `h2`: it is a sans-IO protocol state machine (python-hyper), so
it runs on our own selector loop with our own sockets and TLS, like the DoT code;
httpx and friends bring their own I/O model (a thread or an asyncio loop per
client). HTTP/2 multiplexes every query on one connection, where HTTP/1.1 would
need a pool of connections to have several queries in flight without
head-of-line blocking; and unbound, like the big public resolvers, serves DoH
over HTTP/2 only.

The query goes out with ID 0, as RFC 8484 recommends (cache friendly); the
stream says which query a reply belongs to, and the reply gets the query's ID
back before the forwarder matches it like any other.
"""

from __future__ import annotations

import contextlib

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from dnsengine.core.upstream_tls import MAX_MESSAGE, ServerClosed, TlsConnection

_CONTENT_TYPE = b"application/dns-message"


class _Stream:
    __slots__ = ("body", "qid", "status")

    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.status = b""
        self.body = bytearray()


class HttpsConnection(TlsConnection):
    scheme = "https"
    alpn = ("h2",)

    def _opened(self) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.initiate_connection()
        self._streams: dict[int, _Stream] = {}
        self._waiting: list[tuple[int, bytes]] = []  # beyond the server's concurrent-stream limit
        upstream = self.upstream
        host = upstream.tls_name or (f"[{upstream.host}]" if ":" in upstream.host else upstream.host)
        authority = host if upstream.port == 443 else f"{host}:{upstream.port}"
        self._headers_base = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", upstream.path.encode()),
            (b"content-type", _CONTENT_TYPE),
            (b"accept", _CONTENT_TYPE),
        ]
        self._send_plain(self._h2.data_to_send())

    def _unsent(self) -> list[tuple[int, bytes]]:
        return self._waiting

    def _closed(self) -> None:
        self._h2 = None
        self._streams = {}
        self._waiting = []

    def _write_queries(self, batch: list[tuple[int, bytes]]) -> None:
        self._waiting.extend(batch)
        self._start_streams()

    def _start_streams(self) -> None:
        conn = self._h2
        limit = conn.remote_settings.max_concurrent_streams
        while self._waiting and conn.open_outbound_streams < limit:
            qid, message = self._waiting.pop(0)
            body = b"\0\0" + message[2:]
            try:
                stream_id = conn.get_next_available_stream_id()
            except h2.exceptions.NoAvailableStreamIDError:
                # 2^30 queries on one connection: a fresh one for these and the unanswered.
                self._waiting.insert(0, (qid, message))
                self._resend_on_new_connection()
                return
            try:
                conn.send_headers(stream_id, [*self._headers_base, (b"content-length", str(len(body)).encode())])
                conn.send_data(stream_id, body, end_stream=True)
            except h2.exceptions.H2Error as exc:  # the flow-control window is shut, say
                with contextlib.suppress(h2.exceptions.H2Error):
                    conn.reset_stream(stream_id)
                self._on_failed(self.channel, qid, f"HTTP/2: {exc}")
                continue
            self._streams[stream_id] = _Stream(qid)
            self._note_sent([(qid, message)])
        data = conn.data_to_send()
        if data:
            self._send_plain(data)

    def _received(self, data: bytes) -> None:
        conn = self._h2
        try:
            events = conn.receive_data(data)
        except h2.exceptions.H2Error as exc:
            raise ValueError(f"HTTP/2 protocol error: {exc}") from None
        room = False  # a stream ended or the server's limit changed: waiting queries may start
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.status = dict(event.headers).get(b":status", b"")
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
                    if len(stream.body) > MAX_MESSAGE:
                        conn.reset_stream(event.stream_id)
                        self._end(event.stream_id, "reply larger than a DNS message")
                        room = True
            elif isinstance(event, h2.events.StreamEnded):
                self._end(event.stream_id, None)
                room = True
            elif isinstance(event, h2.events.StreamReset):
                self._end(event.stream_id, f"stream reset by the server (error {event.error_code})")
                room = True
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                room = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                # GOAWAY: a new connection for new queries, and those not answered yet go again.
                raise ServerClosed
            if self._sock is None:  # a handler closed the connection
                return
        if room and self._waiting:
            self._start_streams()
            return
        out = conn.data_to_send()
        if out:
            self._send_plain(out)

    def _end(self, stream_id: int, error: str | None) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self._sent.pop(stream.qid, None)
        self._answered += 1
        if error is None and stream.status != b"200":
            error = f"HTTP status {stream.status.decode(errors='replace') or 'missing'}"
        if error is None and len(stream.body) < 12:
            error = "reply too short for a DNS message"
        if error is not None:
            self._on_failed(self.channel, stream.qid, error)
            return
        body = stream.body
        body[0:2] = stream.qid.to_bytes(2, "big")
        self._on_reply(self.channel, bytes(body))
