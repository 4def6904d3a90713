"""Forwarding to upstream resolvers without a thread per query.

The classic design (dnsmasq's): queries go out on a few non-blocking UDP
sockets, each with a random ID, and wait in a table of pending queries; the
I/O loop (`dnsengine.core.ioloop`, the same thread that reads the clients' UDP
queries in the engine) reads every reply, matches it to its pending query by
socket and ID, checks that it answers the question we asked, and hands it to
the query's callback. The same thread expires queries whose upstream stayed
silent and fails them over to the next upstream, and races a slow one: when an
upstream has not answered within its own observed p99 round trip (bounded),
the query goes to the next upstream too and the first answer wins, so a silent
or overloaded upstream costs a query a few tens of milliseconds, not the whole
timeout, while its own attempt still runs to the timeout (and counts towards
its demotion). A truncated reply is retried over TCP
by a small fixed pool of threads. With the compiled `_mmsg` extension
(`dnsengine.core.batchio`) the UDP sockets are read with recvmmsg, and the queries
the I/O loop forwards in one pass leave with one sendmmsg per socket at its end.
An encrypted upstream (`tls://`, `https://`) has one kept-open connection on the
same loop instead of UDP sockets (`upstream_tls`, `upstream_https`): its queries
wait in the same table, keyed by the connection's channel number instead of a
socket's, so racing, timeouts and failover are the same.
Everything is bounded: pending queries by `max_inflight` (beyond it: refused at
once, and counted), TCP retries by a queue.

One module past ~500 lines on purpose: the pending table, the timeouts, the
racing and the demotion all work on the same per-query state, which only the I/O
thread touches; split, that state would have to be shared across modules.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from dnsengine.core import batchio, wire
from dnsengine.core.ioloop import IoLoop
from dnsengine.core.options import Upstream
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog
from dnsengine.core.upstream_https import HttpsConnection
from dnsengine.core.upstream_tls import TlsConnection

logger = logging.getLogger(__name__)
_warn = RateLimitedLog(logger, interval=10.0)

# callback(reply or None when every upstream failed, label of the upstream that answered)
ReplyCallback = Callable[[bytes | None, str], None]

SOCKETS_PER_UPSTREAM = 4
# Replies read per recvmmsg call, and calls per readable socket per pass (as many as _drain's 256 recv calls).
UDP_RECV_BATCH = 64
UDP_RECV_CALLS = 4
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


# Racing a slow upstream: the next one is asked too once the first has been silent for its
# observed p99 round trip (over its last RTT_SAMPLES answers, recomputed every
# RTT_RECOMPUTE_EVERY), at least HEDGE_MIN and at most half the timeout; until an
# upstream has answered RTT_RECOMPUTE_EVERY times, a quarter of the timeout.
HEDGE_MIN = 0.05
RTT_SAMPLES = 256
RTT_RECOMPUTE_EVERY = 32

# Channel numbers of encrypted connections in the pending table's keys (channel << 16 | ID):
# above any file descriptor, unique in the process.
_channels = itertools.count(1 << 32)


@dataclass(slots=True)
class _Pending:
    """One client question on its way upstream; it may have attempts at several upstreams at once."""

    question: bytes  # the question section we sent (lower-case name + type + class)
    packet: bytes  # the query, minus its ID
    callback: ReplyCallback
    order: list[int]  # upstream indices not asked yet, in order
    upstream: int = -1  # the one asked last
    keys: list[int] = field(default_factory=list)  # its attempts still waiting
    done: bool = False  # answered (or failed): late replies are only counted


@dataclass(slots=True)
class _Attempt:
    pending: _Pending
    upstream: int
    sent: float
    deadline: float


class _RoundTrips:
    """Recent round-trip times of one upstream and their p99, recomputed every few samples."""

    __slots__ = ("count", "p99", "samples")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.count = 0
        self.p99: float | None = None

    def add(self, rtt: float) -> None:
        samples = self.samples
        if len(samples) < RTT_SAMPLES:
            samples.append(rtt)
        else:
            samples[self.count % RTT_SAMPLES] = rtt
        self.count += 1
        if self.count % RTT_RECOMPUTE_EVERY == 0:
            ordered = sorted(samples)
            self.p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


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
        # One connection per encrypted upstream, None for a plain one.
        self._transports: list[TlsConnection | None] = []
        self._sock_upstream: dict[int, int] = {}
        # Attempts keyed by socket and query ID as one int: fileno << 16 | qid. An
        # attempt stays until its upstream answers or its deadline passes, also after
        # another upstream answered its question, so a silent upstream is still noticed.
        self._pending: dict[int, _Attempt] = {}
        # Questions not answered yet: what max_inflight bounds and drain() waits for.
        self._active = 0
        # (deadline, key) in sending order. Every attempt gets the same timeout, so
        # deadlines only grow: a deque, not a heap. Entries of answered attempts stay
        # until their deadline and are skipped then.
        self._deadlines: deque[tuple[float, int]] = deque()
        # (when to race the next upstream, tie-breaker, key, attempt) for attempts that have a next upstream.
        self._hedges: list[tuple[float, int, int, _Attempt]] = []
        self._hedge_seq = itertools.count()
        self._rtts = [_RoundTrips() for _ in upstreams]
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
        # Batched I/O (compiled `_mmsg`): one receive buffer set for every socket (only the
        # loop thread reads), and a send queue per socket, by fileno.
        self._receiver = None
        self._senders: dict[int, batchio.BatchedSender] = {}

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        for index, upstream in enumerate(self.upstreams):
            socks = []
            if upstream.encrypted:
                kind = HttpsConnection if upstream.scheme == "https" else TlsConnection
                channel = next(_channels)
                self._transports.append(kind(upstream, channel, self._loop, self.stats, self.timeout,
                                             self._handle_reply, self._fail_socket, self._fail_query))  # fmt: skip
                self._sock_upstream[channel] = index
                self._sockets.append(socks)
                continue
            self._transports.append(None)
            module = batchio.mmsg()
            if module is not None and self._receiver is None:
                self._receiver = module.Receiver(UDP_RECV_BATCH, 65535)
            for _ in range(self._sockets_per_upstream):
                sock = socket.socket(upstream.family, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                # connect(): the kernel then delivers only this upstream's datagrams
                # to the socket, and each socket gets its own random source port.
                sock.connect((upstream.host, upstream.port))
                sock.setblocking(False)
                if module is None:
                    self._loop.add_reader(sock, self._drain)
                else:
                    self._senders[sock.fileno()] = batchio.BatchedSender(sock, self._loop, self.stats, module,
                                                                         self._queued_send_failed)  # fmt: skip
                    self._loop.add_reader(sock, self._drain_batched)
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
        for transport in self._transports:
            if transport is not None:
                self._loop.call(transport.close)
        for sender in self._senders.values():
            self._loop.call(sender.close)
        with self._lock:
            attempts = list(self._pending.values())
            self._pending.clear()
            self._hedges.clear()
        for attempt in attempts:
            self._finish(attempt.pending, None, "")
        for socks in self._sockets:
            for sock in socks:
                sock.close()

    @property
    def inflight(self) -> int:
        """Questions waiting on an upstream."""
        return self._active

    def drain(self, timeout: float) -> bool:
        """Wait until no question is waiting upstream (or `timeout`); True when drained."""
        deadline = time.monotonic() + timeout
        while self._active or self._tcp_queue.unfinished_tasks:
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
        if self._active >= self.max_inflight:
            self.stats.count("upstream_overflow")
            return False
        question = qname_wire.lower() + _TYPE_CLASS.pack(qtype, qclass)
        # wire.build_query's packet minus its ID, in one concatenation.
        packet = _QUERY_FLAGS_COUNTS + question + (_OPT_DO if do else _OPT_NO_DO)
        order = list(self._order)
        pending = _Pending(question, packet, callback, order)
        with self._lock:  # forward() runs on the TCP thread too
            self._active += 1
        self._send(pending, order.pop(0))
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

    def hedge_delay(self, index: int) -> float:
        """How long upstream `index` may stay silent before the next one is asked as well."""
        p99 = self._rtts[index].p99
        if p99 is None:
            return self.timeout / 4
        return min(max(p99, HEDGE_MIN), self.timeout / 2)

    def _send(self, pending: _Pending, index: int) -> None:
        """Ask upstream `index`; on a send error move on to the next at once."""
        while True:
            pending.upstream = index
            socks = self._sockets[index]
            transport = self._transports[index]
            now = time.monotonic()
            with self._lock:
                for _ in range(8):
                    bits = self._random32()
                    qid = bits & 0xFFFF
                    if transport is None:
                        sock = socks[(bits >> 16) % len(socks)]
                        key = sock.fileno() << 16 | qid
                    else:
                        key = transport.channel << 16 | qid
                    if key not in self._pending:
                        break
                else:  # pragma: no cover - 8 collisions in a row means a full table
                    key = None
                if key is not None:
                    deadline = now + self.timeout
                    attempt = _Attempt(pending, index, now, deadline)
                    self._pending[key] = attempt
                    pending.keys.append(key)
                    self._deadlines.append((deadline, key))
                    if pending.order:
                        # The attempt rides along: a key is reused by later queries once
                        # this one is answered, and their timers are their own.
                        due = now + self.hedge_delay(index)
                        heapq.heappush(self._hedges, (due, next(self._hedge_seq), key, attempt))
            if key is None:
                self.stats.count("upstream_overflow")
                if not pending.keys:
                    self._finish(pending, None, "")
                return
            try:
                if transport is None:
                    query = struct.pack("!H", qid) + pending.packet
                    sender = self._senders.get(sock.fileno()) if self._senders else None
                    # On the loop thread it goes out at the end of the pass (sendmmsg);
                    # a refusal comes back through _queued_send_failed.
                    if sender is None or not sender.send(query, None, (key, pending, index)):
                        sock.send(query)
                else:
                    transport.send(qid, struct.pack("!H", qid) + pending.packet)
                return
            except OSError as exc:
                # ECONNREFUSED from an earlier ICMP error, unreachable network...
                index = self._send_failed(pending, key, index, exc)
                if index is None:
                    return

    def _send_failed(self, pending: _Pending, key: int, index: int, exc: OSError) -> int | None:
        """Sending attempt `key` to upstream `index` failed: the upstream to try next, or None."""
        with self._lock:
            attempt = self._pending.get(key)
            # A queued send fails at the end of the pass: by then its attempt may have been
            # failed (its socket errored) and the key taken by another query's attempt.
            mine = attempt is not None and attempt.pending is pending
            if mine:
                del self._pending[key]
                pending.keys.remove(key)
        if not mine or pending.done:
            return None  # the I/O thread failed this attempt already (its socket errored) and moved on
        self._note_failure(index, f"send failed: {exc}")
        if pending.keys:
            return None  # another attempt is still waiting
        if not pending.order:
            self.stats.count("upstream_all_failed")
            self._finish(pending, None, "")
            return None
        self.stats.count("upstream_failover")
        return pending.order.pop(0)

    def _queued_send_failed(self, tag: tuple[int, _Pending, int], exc: OSError) -> None:
        """The kernel refused a query queued for sendmmsg: as a failed send() in `_send`."""
        key, pending, index = tag
        index = self._send_failed(pending, key, index, exc)
        if index is not None:
            self._send(pending, index)

    def _attempt_failed(self, pending: _Pending) -> None:
        """One of `pending`'s attempts failed: wait for the others, else fail over, else give up."""
        if pending.done or pending.keys:
            return
        if pending.order:
            self.stats.count("upstream_failover")
            self._send(pending, pending.order.pop(0))
            return
        self.stats.count("upstream_all_failed")
        self._finish(pending, None, "")

    def _finish(self, pending: _Pending, reply: bytes | None, label: str) -> None:
        """Answer `pending` once; its other attempts stay until their deadlines, only to be counted."""
        if pending.done:
            return
        pending.done = True
        # Counted out only once the answer is handed on: drain() returning means
        # every answer has reached its listener.
        try:
            self._safe_callback(pending.callback, reply, label)
        finally:
            with self._lock:
                self._active -= 1

    def _note_failure(self, index: int, why: str) -> None:
        self._failures[index] += 1
        if self._failures[index] == FAILURES_BEFORE_DEMOTION:
            self._demoted_at[index] = time.monotonic()
            self._reorder()
        self.stats.count("upstream_errors")
        _warn.warning("upstream %s: %s", self.upstreams[index].label, why)

    # -- receiving --------------------------------------------------------------------

    def _tick(self, now: float) -> float:
        """Run by the I/O loop after every pass: race slow upstreams, time out silent ones;
        seconds until it wants to run again."""
        if self._stop.is_set():
            return 0.1
        self._hedge(now)
        self._expire(now)
        self._reprobe(now)
        for transport in self._transports:
            if transport is not None:
                transport.tick(now)
        # Often enough that a query times out close to its deadline, even with a short timeout.
        wanted = min(0.1, self.timeout / 4)
        if self._deadlines:
            wanted = min(wanted, self._deadlines[0][0] - now)
        if self._hedges:
            wanted = min(wanted, self._hedges[0][0] - now)
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

    def _drain_batched(self, sock: socket.socket) -> None:
        """`_drain` with recvmmsg: up to UDP_RECV_BATCH replies per system call."""
        fileno = sock.fileno()
        recv = self._receiver.recv
        for _ in range(UDP_RECV_CALLS):
            try:
                replies = recv(fileno, False)
            except ConnectionRefusedError:
                self._fail_socket(fileno, "connection refused")
                continue
            except OSError as exc:
                _warn.warning("upstream socket error: %s", exc)
                return
            for data in replies:
                try:
                    self._handle_reply(fileno, data)
                except Exception:  # a bug must not kill the I/O loop thread
                    logger.exception("failed to handle an upstream reply")
            if len(replies) < UDP_RECV_BATCH:
                return

    def _handle_reply(self, fileno: int, data: bytes) -> None:
        if len(data) < 12:
            self.stats.count("upstream_bad_reply")
            return
        key = fileno << 16 | data[0] << 8 | data[1]
        with self._lock:
            attempt = self._pending.get(key)
            if attempt is None or not self._answers(attempt.pending, data):
                attempt = None
            else:
                del self._pending[key]
                attempt.pending.keys.remove(key)
        if attempt is None:
            # Late, duplicate or forged: the real reply may still come.
            self.stats.count("upstream_unmatched_reply")
            return
        pending, index = attempt.pending, attempt.upstream
        self._rtts[index].add(time.monotonic() - attempt.sent)
        rcode = data[3] & 0x0F
        if data[2] & (wire.FLAG_TC >> 8):
            self._note_success(index)
            if pending.done:
                return
            pending.done = True  # the TCP retry answers it; no other attempt may
            try:
                self._tcp_queue.put_nowait((pending, index))
            except queue.Full:
                self.stats.count("upstream_tcp_overflow")
                pending.done = False
                self._finish(pending, None, "")
            return
        if rcode in (wire.SERVFAIL, wire.REFUSED, wire.NOTIMP, wire.FORMERR):
            self._note_failure(index, f"answered rcode {wire.RCODE_NAMES.get(rcode, rcode)}")
            if pending.done or pending.keys or pending.order:
                self._attempt_failed(pending)
                return
        else:
            self._note_success(index)
        if pending.done:
            self.stats.count("upstream_late_replies")  # another upstream won the race
            return
        self._finish(pending, data, self.upstreams[index].label)

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

    def _hedge(self, now: float) -> None:
        """Ask the next upstream too for questions whose current one has been slow."""
        hedges = self._hedges
        if not hedges or hedges[0][0] > now:
            return
        race: list[_Pending] = []
        with self._lock:
            while hedges and hedges[0][0] <= now:
                _, _, key, attempt = heapq.heappop(hedges)
                if self._pending.get(key) is attempt and not attempt.pending.done and attempt.pending.order:
                    race.append(attempt.pending)
        for pending in race:
            if not pending.done and pending.order:  # a send error above may have used the last one
                self.stats.count("upstream_raced")
                self._send(pending, pending.order.pop(0))

    def _expire(self, now: float) -> None:
        expired: list[_Attempt] = []
        with self._lock:
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] <= now:
                deadline, key = deadlines.popleft()
                attempt = self._pending.get(key)
                if attempt is not None and attempt.deadline == deadline:
                    del self._pending[key]
                    attempt.pending.keys.remove(key)
                    expired.append(attempt)
        for attempt in expired:
            self._note_failure(attempt.upstream, f"no answer within {self.timeout}s")
            self._attempt_failed(attempt.pending)

    def _fail_query(self, channel: int, qid: int, why: str) -> None:
        """One query on an encrypted connection failed (an HTTP error, say): fail it over now."""
        key = channel << 16 | qid
        with self._lock:
            attempt = self._pending.pop(key, None)
            if attempt is not None:
                attempt.pending.keys.remove(key)
        if attempt is None:
            return
        self._note_failure(attempt.upstream, why)
        self._attempt_failed(attempt.pending)

    def _fail_socket(self, fileno: int, why: str) -> None:
        with self._lock:
            keys = [k for k in self._pending if k >> 16 == fileno]
            failed = [self._pending.pop(k) for k in keys]
            for key, attempt in zip(keys, failed, strict=True):
                attempt.pending.keys.remove(key)
        if not failed:
            return
        self._note_failure(failed[0].upstream, why)
        for attempt in failed:
            self._attempt_failed(attempt.pending)

    # -- TCP retry --------------------------------------------------------------------

    def _tcp_loop(self) -> None:
        while True:
            item = self._tcp_queue.get()
            try:
                if item is None or self._stop.is_set():
                    return
                pending, index = item
                try:
                    reply, label = self._tcp_query(pending, index)
                except Exception:
                    logger.exception("TCP retry failed unexpectedly")
                    reply, label = None, ""
                try:
                    self._safe_callback(pending.callback, reply, label)
                finally:
                    with self._lock:
                        self._active -= 1
            finally:
                self._tcp_queue.task_done()

    def _tcp_query(self, pending: _Pending, first: int) -> tuple[bytes | None, str]:
        """Ask over TCP, the truncating upstream first, then the other plain ones."""
        for index in [first, *(i for i in self._order if i != first)]:
            upstream = self.upstreams[index]
            if upstream.encrypted:
                continue  # a stream transport never truncates; its own connection is on the loop
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
