"""A lean fake upstream for load tests: answers straight from bytes, one thread.

`gloryhole_site.testing.fake_upstream` parses every packet with dnslib, so in a load test it,
not the server under test, would set the ceiling. This one only walks the question: it flips QR and RA, copies the
question and appends one A (192.0.2.1) or AAAA (2001:db8::1) answer whose name
is a 0xC00C pointer back to the question; any other type gets NODATA. Names
starting with "nx." get NXDOMAIN, so negative caching can be exercised. No EDNS
OPT is echoed: replies are tiny and never truncated, so it needs no TCP.

With `--cnames K` one A/AAAA answer in K (by a hash of the question) is a CNAME
chain instead, as a tracker behind a first-party name looks: the name CNAME
`<its first label>.cdn.example.net`, then the address for that target. The
engine's deep CNAME inspection then has targets to match.

It only ever binds loopback and only answers whoever asked.

    python -m devtools.load.fast_upstream --port 0        # prints "fast upstream on 127.0.0.1:PORT"
    python -m devtools.load.fast_upstream --delay 0.2     # hold every reply 200 ms (off by default)
    python -m devtools.load.fast_upstream --cnames 4      # every 4th name answered through a CNAME
"""

from __future__ import annotations

import argparse
import heapq
import select
import signal
import socket
import struct
import sys
import time
import zlib

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHHIH")  # name pointer, type, class, ttl, rdlength

TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28
CNAME_SUFFIX = b"\x03cdn\x07example\x03net\x00"
FLAG_QR, FLAG_RA, OPCODE_MASK, FLAG_RD = 0x8000, 0x0080, 0x7800, 0x0100
NXDOMAIN = 3

ADDRESS_V4 = socket.inet_pton(socket.AF_INET, "192.0.2.1")
ADDRESS_V6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")


def build_reply(query: bytes, ttl: int = 300, cnames: int = 0) -> bytes | None:
    """Reply bytes for one query, or None for anything that is not a plain one-question query.

    Dropping malformed packets (rather than answering FORMERR) keeps the loop to
    a few slices per packet; load tests never send them.
    """
    if len(query) < 17:
        return None
    qid, flags, qdcount, _, _, _ = _HEADER.unpack_from(query)
    if flags & FLAG_QR or qdcount != 1:
        return None
    # Walk the labels of the question name; pointers are not allowed in a question.
    pos = 12
    end = len(query)
    while True:
        if pos >= end:
            return None
        length = query[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            return None
        pos += 1 + length
    if pos + 4 > end:
        return None
    qtype = (query[pos] << 8) | query[pos + 1]
    question = query[12 : pos + 4]
    rflags = FLAG_QR | FLAG_RA | (flags & (OPCODE_MASK | FLAG_RD))
    # "nx." as the first label: byte 12 is its length (2), then "nx".
    if query[12] == 2 and query[13:15].lower() == b"nx":
        return _HEADER.pack(qid, rflags | NXDOMAIN, 1, 0, 0, 0) + question
    if qtype == TYPE_A:
        rdata = ADDRESS_V4
    elif qtype == TYPE_AAAA:
        rdata = ADDRESS_V6
    else:
        return _HEADER.pack(qid, rflags, 1, 0, 0, 0) + question
    qclass = (query[pos + 2] << 8) | query[pos + 3]
    if cnames and zlib.crc32(question) % cnames == 0:
        first = query[12 : 13 + query[12]]
        target = first + CNAME_SUFFIX
        # The target starts right after the CNAME's fixed part: 12 + question + 12.
        target_at = 12 + len(question) + 12
        return (
            _HEADER.pack(qid, rflags, 1, 2, 0, 0)
            + question
            + _RR_FIXED.pack(0xC00C, TYPE_CNAME, qclass, ttl, len(target))
            + target
            + _RR_FIXED.pack(0xC000 | target_at, qtype, qclass, ttl, len(rdata))
            + rdata
        )
    return (
        _HEADER.pack(qid, rflags, 1, 1, 0, 0)
        + question
        + _RR_FIXED.pack(0xC00C, qtype, qclass, ttl, len(rdata))
        + rdata
    )


class FastUpstream:
    """One UDP socket on loopback and one loop; `received`/`answered` count packets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ttl: int = 300, delay: float = 0.0,
                 cnames: int = 0) -> None:  # fmt: skip
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        # A big receive buffer absorbs bursts from a server that forwards in batches.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, port))
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.ttl = ttl
        self.delay = delay
        self.cnames = cnames
        self.received = 0
        self.answered = 0
        self._running = True

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self) -> None:
        self._running = False

    def serve(self) -> None:
        if self.delay > 0:
            self._serve_delayed()
        else:
            self._serve()

    def _serve(self) -> None:
        # The timeout only lets the loop notice stop(); it costs nothing while busy.
        self.sock.settimeout(0.2)
        recvfrom, sendto, ttl, cnames = self.sock.recvfrom, self.sock.sendto, self.ttl, self.cnames
        while self._running:
            try:
                data, addr = recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1
            reply = build_reply(data, ttl, cnames)
            if reply is None:
                continue
            try:
                sendto(reply, addr)
                self.answered += 1
            except OSError:
                pass

    def _serve_delayed(self) -> None:
        """The same, holding each reply `delay` seconds, still in one thread (a heap of due times)."""
        self.sock.setblocking(False)
        pending: list[tuple[float, int, bytes, object]] = []
        seq = 0
        while self._running:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, reply, addr = heapq.heappop(pending)
                try:
                    self.sock.sendto(reply, addr)
                    self.answered += 1
                except OSError:
                    pass
            timeout = 0.2 if not pending else max(0.0, pending[0][0] - now)
            readable, _, _ = select.select([self.sock], [], [], timeout)
            if not readable:
                continue
            # Drain what is queued so a burst does not cost one select() per packet.
            for _ in range(1000):
                try:
                    data, addr = self.sock.recvfrom(4096)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    return
                self.received += 1
                reply = build_reply(data, self.ttl, self.cnames)
                if reply is not None:
                    seq += 1
                    heapq.heappush(pending, (time.monotonic() + self.delay, seq, reply, addr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--ttl", type=int, default=300)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to hold each reply (default 0: off)")
    parser.add_argument("--cnames", type=int, default=0, help="answer one name in this many through a CNAME (0: none)")
    args = parser.parse_args()
    if args.cnames < 0:
        parser.error("--cnames must be 0 or more")
    server = FastUpstream(args.host, args.port, ttl=args.ttl, delay=args.delay, cnames=args.cnames)

    def _stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"fast upstream on {server.address}", flush=True)
    server.serve()
    server.sock.close()
    print(f"fast upstream stopped: received={server.received} answered={server.answered}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
