"""Forwarding to upstream resolvers without a thread per query.

The classic design (dnsmasq's): queries go out on a few non-blocking UDP
sockets, each with a random ID, and wait in a table of pending queries; the
I/O loop (`dnsengine.ioloop`, the same thread that reads the clients' UDP
queries in the engine) reads every reply, matches it to its pending query by
socket and ID, checks that it answers the question we asked, and hands it to
the query's callback. The same thread expires queries whose upstream stayed
silent and fails them over to the next upstream. A truncated reply is retried over TCP
by a small fixed pool of threads. Everything is bounded: pending queries by
`max_inflight` (beyond it: refused at once, and counted), TCP retries by a
queue.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from dnsengine import wire
from dnsengine.config import Upstream
from dnsengine.ioloop import IoLoop
from dnsengine.stats import EngineStats
from dnsengine.throttle import RateLimitedLog

logger = logging.getLogger(__name__)
_warn = RateLimitedLog(logger, interval=10.0)

# callback(reply or None when every upstream failed, label of the upstream that answered)
ReplyCallback = Callable[[bytes | None, str], None]

SOCKETS_PER_UPSTREAM = 4
TCP_RETRY_THREADS = 2
TCP_RETRY_QUEUE = 256
# An upstream that failed this many times in a row is tried last until it answers again.
FAILURES_BEFORE_DEMOTION = 3
# ...and gets one query again after this long, so a recovered primary wins its place back.
REPROBE_AFTER = 30.0


_TYPE_CLASS = struct.Struct("!HH")
_QUERY_FLAGS_COUNTS = wire.build_query(0, b"\x00", 0, 0, False)[2:12]
_OPT_NO_DO = wire.opt_record(1232, False)
_OPT_DO = wire.opt_record(1232, True)


@dataclass(slots=True)
class _Pending:
    question: bytes  # the question section we sent (lower-case name + type + class)
    packet: bytes  # the query, minus its ID
    callback: ReplyCallback
    order: list[int]  # upstream indices still to try, in order
    upstream: int  # the one this attempt went to
    deadline: float
    sock: socket.socket


class UpstreamForwarder:
    def __init__(
        self,
        upstreams: tuple[Upstream, ...],
        timeout: float,
        max_inflight: int,
        stats: EngineStats,
        loop: IoLoop,
        sockets_per_upstream: int = SOCKETS_PER_UPSTREAM,
        reprobe_after: float = REPROBE_AFTER,
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.upstreams = upstreams
        self.timeout = timeout
        self.max_inflight = max_inflight
        self.stats = stats
        self._sockets: list[list[socket.socket]] = []
        self._sock_upstream: dict[int, int] = {}
        # Keyed by socket and query ID as one int: fileno << 16 | qid.
        self._pending: dict[int, _Pending] = {}
        # (deadline, key) in sending order. Every attempt gets the same timeout, so
        # deadlines only grow: a deque, not a heap. Entries of answered queries stay
        # until their deadline and are skipped then.
        self._deadlines: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._failures = [0] * len(upstreams)
        self._order: tuple[int, ...] = tuple(range(len(upstreams)))
        self._random_lock = threading.Lock()
        self._random_pool = b""
        self._random_pos = 0
        # The loop the engine's UDP listener runs on; its owner starts and stops it.
        self._loop = loop
        self._stop = threading.Event()
        self._tcp_queue: queue.Queue = queue.Queue(maxsize=TCP_RETRY_QUEUE)
        self._threads: list[threading.Thread] = []
        self._sockets_per_upstream = sockets_per_upstream
        self.reprobe_after = reprobe_after
        self._demoted_at = [0.0] * len(upstreams)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        for index, upstream in enumerate(self.upstreams):
            socks = []
            for _ in range(self._sockets_per_upstream):
                sock = socket.socket(upstream.family, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                # connect(): the kernel then delivers only this upstream's datagrams
                # to the socket, and each socket gets its own random source port.
                sock.connect((upstream.host, upstream.port))
                sock.setblocking(False)
                self._loop.add_reader(sock, self._drain)
                self._sock_upstream[sock.fileno()] = index
                socks.append(sock)
            self._sockets.append(socks)
        self._loop.add_ticker(self._tick)
        for i in range(TCP_RETRY_THREADS):
            self._threads.append(threading.Thread(target=self._tcp_loop, name=f"upstream-tcp-{i}", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for _ in range(TCP_RETRY_THREADS):
            try:
                self._tcp_queue.put_nowait(None)
            except queue.Full:
                pass
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)
        for socks in self._sockets:
            for sock in socks:
                self._loop.remove_reader(sock)
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for p in pending:
            self._safe_callback(p.callback, None, "")
        for socks in self._sockets:
            for sock in socks:
                sock.close()

    @property
    def inflight(self) -> int:
        return len(self._pending)

    def drain(self, timeout: float) -> bool:
        """Wait until no query is pending upstream (or `timeout`); True when drained."""
        deadline = time.monotonic() + timeout
        while self._pending or self._tcp_queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- sending ----------------------------------------------------------------------

    def forward(self, qname_wire: bytes, qtype: int, qclass: int, do: bool, callback: ReplyCallback) -> bool:
        """Send a query upstream; `callback` gets the reply later, on the I/O loop's thread.

        Returns False, without calling back, when max_inflight queries are already
        pending: the caller answers SERVFAIL.
        """
        if len(self._pending) >= self.max_inflight:
            self.stats.count("upstream_overflow")
            return False
        question = qname_wire.lower() + _TYPE_CLASS.pack(qtype, qclass)
        # wire.build_query's packet minus its ID, in one concatenation.
        packet = _QUERY_FLAGS_COUNTS + question + (_OPT_DO if do else _OPT_NO_DO)
        order = list(self._order)
        first = order.pop(0)
        pending = _Pending(question, packet, callback, order, first, 0.0, self._sockets[first][0])
        self._send(pending)
        return True

    def _reorder(self) -> None:
        # Configured order, but upstreams that keep failing go last, so one dead
        # upstream does not cost every query a timeout. Recomputed only when an
        # upstream's health changes, not per query.
        healthy = [i for i, f in enumerate(self._failures) if f < FAILURES_BEFORE_DEMOTION]
        failing = [i for i, f in enumerate(self._failures) if f >= FAILURES_BEFORE_DEMOTION]
        self._order = tuple(healthy + failing)

    def _reprobe(self, now: float) -> None:
        """Give an upstream demoted long enough ago its place back, one failure short of
        demotion: if it still fails it drops back at once, costing one query a timeout."""
        changed = False
        for index, failures in enumerate(self._failures):
            if failures >= FAILURES_BEFORE_DEMOTION and now - self._demoted_at[index] >= self.reprobe_after:
                self._failures[index] = FAILURES_BEFORE_DEMOTION - 1
                changed = True
        if changed:
            self._reorder()

    def _note_success(self, index: int) -> None:
        if self._failures[index]:
            self._failures[index] = 0
            self._reorder()

    def _random32(self) -> int:
        """32 bits from the OS's CSPRNG, taken from a pool to save a syscall per query.

        Query IDs and the choice of source socket (port) are what keep an off-path
        attacker from forging replies (with the question check), so not the
        `random` module.
        """
        with self._random_lock:
            pos = self._random_pos
            if pos >= len(self._random_pool):
                self._random_pool = os.urandom(4096)
                pos = 0
            self._random_pos = pos + 4
            return int.from_bytes(self._random_pool[pos : pos + 4], "big")

    def _random16(self) -> int:
        return self._random32() & 0xFFFF

    def _send(self, pending: _Pending) -> None:
        """Send `pending` to pending.upstream; on a send error fail over at once."""
        while True:
            socks = self._sockets[pending.upstream]
            with self._lock:
                for _ in range(8):
                    bits = self._random32()
                    qid = bits & 0xFFFF
                    sock = socks[(bits >> 16) % len(socks)]
                    key = sock.fileno() << 16 | qid
                    if key not in self._pending:
                        break
                else:  # pragma: no cover - 8 collisions in a row means a full table
                    key = None
                if key is not None:
                    pending.sock = sock
                    pending.deadline = time.monotonic() + self.timeout
                    self._pending[key] = pending
                    self._deadlines.append((pending.deadline, key))
            if key is None:
                self.stats.count("upstream_overflow")
                self._safe_callback(pending.callback, None, "")
                return
            try:
                sock.send(struct.pack("!H", qid) + pending.packet)
                return
            except OSError as exc:
                # ECONNREFUSED from an earlier ICMP error, unreachable network...
                with self._lock:
                    self._pending.pop(key, None)
                self._note_failure(pending.upstream, f"send failed: {exc}")
                if not self._next_upstream(pending):
                    return

    def _next_upstream(self, pending: _Pending) -> bool:
        """Move `pending` to its next upstream; when none is left, fail it. True: try again."""
        if pending.order:
            pending.upstream = pending.order.pop(0)
            self.stats.count("upstream_failover")
            return True
        self.stats.count("upstream_all_failed")
        self._safe_callback(pending.callback, None, "")
        return False

    def _note_failure(self, index: int, why: str) -> None:
        self._failures[index] += 1
        if self._failures[index] == FAILURES_BEFORE_DEMOTION:
            self._demoted_at[index] = time.monotonic()
            self._reorder()
        self.stats.count("upstream_errors")
        _warn.warning("upstream %s: %s", self.upstreams[index].label, why)

    # -- receiving --------------------------------------------------------------------

    def _tick(self, now: float) -> float:
        """Run by the I/O loop after every pass: time out silent upstreams; seconds until the next deadline."""
        if self._stop.is_set():
            return 0.1
        self._expire(now)
        self._reprobe(now)
        # Often enough that a query times out close to its deadline, even with a short timeout.
        wanted = min(0.1, self.timeout / 4)
        if self._deadlines:
            return min(wanted, self._deadlines[0][0] - now)
        return wanted

    def _drain(self, sock: socket.socket) -> None:
        fileno = sock.fileno()
        for _ in range(256):
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                # ICMP port unreachable: nothing listens there. Fail over every
                # query waiting on this socket now rather than at its timeout.
                self._fail_socket(fileno, "connection refused")
                continue
            except OSError as exc:
                _warn.warning("upstream socket error: %s", exc)
                return
            try:
                self._handle_reply(fileno, data)
            except Exception:  # a bug must not kill the I/O loop thread
                logger.exception("failed to handle an upstream reply")

    def _handle_reply(self, fileno: int, data: bytes) -> None:
        if len(data) < 12:
            self.stats.count("upstream_bad_reply")
            return
        key = fileno << 16 | data[0] << 8 | data[1]
        with self._lock:
            pending = self._pending.get(key)
            if pending is None or not self._answers(pending, data):
                pending = None
            else:
                del self._pending[key]
        if pending is None:
            # Late, duplicate or forged: the real reply may still come.
            self.stats.count("upstream_unmatched_reply")
            return
        rcode = data[3] & 0x0F
        if data[2] & (wire.FLAG_TC >> 8):
            self._note_success(pending.upstream)
            try:
                self._tcp_queue.put_nowait(pending)
            except queue.Full:
                self.stats.count("upstream_tcp_overflow")
                self._safe_callback(pending.callback, None, "")
            return
        if rcode in (wire.SERVFAIL, wire.REFUSED, wire.NOTIMP, wire.FORMERR):
            self._note_failure(pending.upstream, f"answered rcode {wire.RCODE_NAMES.get(rcode, rcode)}")
            if pending.order:
                if self._next_upstream(pending):
                    self._send(pending)
                return
        else:
            self._note_success(pending.upstream)
        self._safe_callback(pending.callback, data, self.upstreams[pending.upstream].label)

    @staticmethod
    def _answers(pending: _Pending, data: bytes) -> bool:
        """Is `data` a reply to the question we sent? (ID matched already.)"""
        if not data[2] & 0x80:  # QR
            return False
        q = pending.question
        got = data[12 : 12 + len(q)]
        if got == q:
            return (data[4] << 8 | data[5]) == 1
        # Some servers answer with the name in another case (0x20 bit games).
        return (
            len(got) == len(q) and got[:-4].lower() == q[:-4] and got[-4:] == q[-4:] and (data[4] << 8 | data[5]) == 1
        )

    def _expire(self, now: float) -> None:
        retry: list[_Pending] = []
        with self._lock:
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] <= now:
                deadline, key = deadlines.popleft()
                pending = self._pending.get(key)
                if pending is not None and pending.deadline == deadline:
                    del self._pending[key]
                    retry.append(pending)
        for pending in retry:
            self._note_failure(pending.upstream, f"no answer within {self.timeout}s")
            if self._next_upstream(pending):
                self._send(pending)

    def _fail_socket(self, fileno: int, why: str) -> None:
        with self._lock:
            keys = [k for k in self._pending if k >> 16 == fileno]
            failed = [self._pending.pop(k) for k in keys]
        if not failed:
            return
        self._note_failure(failed[0].upstream, why)
        for pending in failed:
            if self._next_upstream(pending):
                self._send(pending)

    # -- TCP retry --------------------------------------------------------------------

    def _tcp_loop(self) -> None:
        while True:
            pending = self._tcp_queue.get()
            try:
                if pending is None or self._stop.is_set():
                    return
                try:
                    reply, label = self._tcp_query(pending)
                except Exception:
                    logger.exception("TCP retry failed unexpectedly")
                    reply, label = None, ""
                self._safe_callback(pending.callback, reply, label)
            finally:
                self._tcp_queue.task_done()

    def _tcp_query(self, pending: _Pending) -> tuple[bytes | None, str]:
        """Ask over TCP, the truncating upstream first, then the others."""
        for index in [pending.upstream, *pending.order]:
            upstream = self.upstreams[index]
            qid = self._random16()
            message = struct.pack("!H", qid) + pending.packet
            try:
                with socket.create_connection((upstream.host, upstream.port), timeout=self.timeout) as conn:
                    conn.sendall(struct.pack("!H", len(message)) + message)
                    head = _recv_exact(conn, 2)
                    reply = _recv_exact(conn, struct.unpack("!H", head)[0])
            except (OSError, ValueError) as exc:
                self._note_failure(index, f"TCP: {exc}")
                continue
            if len(reply) >= 12 and reply[:2] == message[:2] and self._answers(pending, reply):
                self.stats.count("upstream_tcp_retries")
                return reply, upstream.label
            self._note_failure(index, "TCP reply does not match the question")
        return None, ""

    @staticmethod
    def _safe_callback(callback: ReplyCallback, reply: bytes | None, label: str) -> None:
        try:
            callback(reply, label)
        except Exception:
            logger.exception("reply callback failed")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ValueError("connection closed mid-message")
        buf += chunk
    return bytes(buf)
