"""A tiny authoritative-looking DNS server on loopback, for tests and for trying the engine by hand.

It answers every A query with a fixed address (AAAA with a fixed IPv6 one,
other types NODATA) and can be told to delay, stay silent, answer SERVFAIL,
NXDOMAIN, or set TC on UDP so the client has to retry over TCP. It can cloak a
name behind a CNAME chain, as trackers do (`metrics.shop.example` CNAME
`shop.example.eulerian.net`, then the address). It never forwards anything anywhere.

    python -m gloryhole_site.testing.fake_upstream --port 5399
"""

from __future__ import annotations

import argparse
import heapq
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, QTYPE, RR, SOA, TXT, A, DNSRecord


@dataclass
class Behaviour:
    mode: str = "answer"  # answer | silent | servfail | nxdomain | truncate | wrongid | wrongname
    delay: float = 0.0
    address: str = "192.0.2.1"
    address6: str = "2001:db8::1"
    ttl: int = 300
    big_txt: int = 0  # answer TXT queries with this many 200-byte strings
    names: dict[str, str] = field(default_factory=dict)  # per-name override of `address`
    # name -> CNAME chain: A/AAAA answers for the name are CNAMEs to each target in turn, then
    # the last target's address (CNAME cloaking).
    cnames: dict[str, tuple[str, ...]] = field(default_factory=dict)


class FakeUpstream:
    """UDP and TCP on one loopback port; `received` counts the queries it saw."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        # With port 0 the kernel picks a free UDP port whose TCP twin may be taken: retry.
        for attempt in range(20):
            self.udp = socket.socket(family, socket.SOCK_DGRAM)
            self.tcp = socket.socket(family, socket.SOCK_STREAM)
            # Room for a burst: a test may forward hundreds of queries at once, and
            # the default buffer (~200 KiB) drops some while answers are being built.
            self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            try:
                self.udp.bind((host, port))
                self.port = self.udp.getsockname()[1]
                self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if port or attempt == 19:
                    raise
        self.tcp.listen(64)
        self.received = 0
        self.received_tcp = 0
        self.queries: list[tuple[str, str]] = []  # (name, type), the last 1000
        self._stop = threading.Event()
        self._delayed: list[tuple[float, int, bytes, tuple]] = []
        self._delayed_lock = threading.Lock()
        self._seq = 0
        self._threads = [
            threading.Thread(target=self._udp_loop, name="fake-upstream-udp", daemon=True),
            threading.Thread(target=self._tcp_loop, name="fake-upstream-tcp", daemon=True),
            threading.Thread(target=self._delay_loop, name="fake-upstream-delay", daemon=True),
        ]

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> FakeUpstream:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, data: bytes, tcp: bool) -> bytes | None:
        b = self.behaviour
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return None
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE.get(request.q.qtype)
        self.queries.append((qname, qtype))
        del self.queries[:-1000]
        if b.mode == "silent":
            return None
        reply = request.reply()
        if b.mode == "servfail":
            reply.header.rcode = 2
        elif b.mode == "nxdomain" or qname.startswith("nx."):
            reply.header.rcode = 3
            reply.add_auth(
                RR(request.q.qname, QTYPE.SOA, rdata=SOA("ns.test.", "h.test.", (1, 60, 60, 60, 30)), ttl=60)
            )
        elif request.q.qtype in (QTYPE.A, QTYPE.AAAA):
            owner = request.q.qname
            for target in b.cnames.get(qname, ()):
                reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(target), ttl=b.ttl))
                owner = target
            last = str(owner).rstrip(".").lower()
            if request.q.qtype == QTYPE.A:
                reply.add_answer(RR(owner, QTYPE.A, rdata=A(b.names.get(last, b.address)), ttl=b.ttl))
            else:
                reply.add_answer(RR(owner, QTYPE.AAAA, rdata=AAAA(b.address6), ttl=b.ttl))
        elif request.q.qtype == QTYPE.TXT and b.big_txt:
            for i in range(b.big_txt):
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(f"{i:03d}" + "x" * 197), ttl=b.ttl))
        else:
            reply.add_auth(
                RR(request.q.qname, QTYPE.SOA, rdata=SOA("ns.test.", "h.test.", (1, 60, 60, 60, 30)), ttl=60)
            )
        if b.mode == "wrongid":
            reply.header.id = (request.header.id + 1) & 0xFFFF
        if b.mode == "wrongname":
            reply.q.qname = "wrong.example."
        packed = reply.pack()
        if not tcp and (b.mode == "truncate" or len(packed) > 1232):
            cut = request.reply()
            cut.header.tc = 1
            packed = cut.pack()
        return packed

    def _udp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.udp.recvfrom(4096)
            except OSError:
                return
            if not data:
                continue
            self.received += 1
            reply = self.answer(data, tcp=False)
            if reply is None:
                continue
            if self.behaviour.delay > 0:
                with self._delayed_lock:
                    self._seq += 1
                    heapq.heappush(self._delayed, (time.monotonic() + self.behaviour.delay, self._seq, reply, addr))
                continue
            try:
                self.udp.sendto(reply, addr)
            except OSError:
                pass

    def _delay_loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            due = []
            with self._delayed_lock:
                while self._delayed and self._delayed[0][0] <= now:
                    due.append(heapq.heappop(self._delayed))
            for _, _, reply, addr in due:
                try:
                    self.udp.sendto(reply, addr)
                except OSError:
                    pass
            time.sleep(0.002)

    def _tcp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                with conn:
                    while True:
                        head = conn.recv(2, socket.MSG_WAITALL)
                        if len(head) < 2:
                            break
                        (length,) = struct.unpack("!H", head)
                        data = conn.recv(length, socket.MSG_WAITALL)
                        self.received_tcp += 1
                        if self.behaviour.delay:
                            time.sleep(self.behaviour.delay)
                        reply = self.answer(data, tcp=True)
                        if reply is None:
                            break
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1", "localhost"])
    parser.add_argument("--port", type=int, default=5399)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--ttl", type=int, default=300)
    parser.add_argument("--cloak", action="store_true",
                        help="answer metrics.shop.example through a CNAME to shop.example.eulerian.net")  # fmt: skip
    args = parser.parse_args()
    host = "127.0.0.1" if args.host == "localhost" else args.host
    cnames = {"metrics.shop.example": ("shop.example.eulerian.net",)} if args.cloak else {}
    server = FakeUpstream(host, args.port, Behaviour(delay=args.delay, ttl=args.ttl, cnames=cnames)).start()
    print(f"fake upstream on {server.address}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
