"""The load test's baseline: dnslib's stock DNSServer with a resolver equivalent to ours.

This is what "a DNS sinkhole in Python" looks like without the engine's work:
socketserver's thread-per-request UDP server, every packet parsed into dnslib
objects, a blocklist held as a set with parent-domain match, misses forwarded
with a fresh socket per query (as dnslib's ProxyResolver does) and replies kept
in a plain dict. It logs nothing, so the comparison with the engine is fair
when the engine's query log is off.

    python -m devtools.load.baseline_server --port 0 --upstream 127.0.0.1:5399 --blocklist names.txt
"""

from __future__ import annotations

import argparse
import signal
import threading
import time

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# The engine's defaults (GLORYHOLE_BLOCKING_MODE=null, GLORYHOLE_BLOCK_TTL=10).
BLOCK_TTL = 10


def load_blocklist(path: str) -> set[str]:
    """Plain-domain or hosts lines; the same names `importblocklist` reads from a load-test list."""
    names: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            names.add(parts[-1].rstrip(".").lower())
    return names


class BaselineResolver(BaseResolver):
    """allow nothing > block (set, parent match) > cache (dict) > upstream (socket per query)."""

    def __init__(
        self,
        blocked: set[str],
        upstream: tuple[str, int],
        blocking_mode: str = "null",
        timeout: float = 2.0,
        cache_size: int = 20000,
    ) -> None:
        self.blocked = blocked
        self.upstream = upstream
        self.blocking_mode = blocking_mode
        self.timeout = timeout
        self.cache_size = cache_size
        self.cache: dict[tuple[str, int], tuple[float, bytes]] = {}

    def is_blocked(self, name: str) -> bool:
        labels = name.split(".")
        return any(".".join(labels[i:]) in self.blocked for i in range(len(labels) - 1))

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = request.q.qtype
        if self.is_blocked(qname):
            reply = request.reply()
            if self.blocking_mode == "nxdomain":
                reply.header.rcode = RCODE.NXDOMAIN
            elif qtype == QTYPE.A:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("0.0.0.0"), ttl=BLOCK_TTL))
            elif qtype == QTYPE.AAAA:
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA("::"), ttl=BLOCK_TTL))
            return reply
        key = (qname, qtype)
        hit = self.cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            reply = DNSRecord.parse(hit[1])
            reply.header.id = request.header.id
            return reply
        try:
            data = request.send(self.upstream[0], self.upstream[1], timeout=self.timeout)
            reply = DNSRecord.parse(data)
        except Exception:  # timeout, refused, or a reply dnslib cannot parse: all SERVFAIL to the client
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        ttls = [rr.ttl for rr in reply.rr] or [60]
        if reply.header.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN):
            # A plain dict: when it is full, start over rather than pay for LRU bookkeeping.
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[key] = (time.monotonic() + min(ttls), data)
        return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--upstream", required=True, help="HOST:PORT on loopback")
    parser.add_argument("--blocklist", required=True, help="file of names to block, one per line")
    parser.add_argument("--blocking-mode", default="null", choices=["null", "nxdomain"])
    parser.add_argument("--cache-size", type=int, default=20000)
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the baseline only forwards to loopback")

    blocked = load_blocklist(args.blocklist)
    resolver = BaselineResolver(blocked, (host, int(port)), args.blocking_mode, cache_size=args.cache_size)
    # The stock logger prints a line per query; a sinkhole under load test must not.
    quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False, logf=lambda s: None)
    server = DNSServer(resolver, address=args.host, port=args.port, logger=quiet)
    bound = server.server.server_address[1]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start_thread()
    print(f"baseline (dnslib DNSServer) listening on {args.host}:{bound} with {len(blocked)} blocked names", flush=True)
    stop.wait()
    server.stop()
    server.server.server_close()
    print("baseline stopped", flush=True)


if __name__ == "__main__":
    main()
