"""Instructions per query of the UDP path, batched (recvmmsg/sendmmsg) or not, under callgrind.

The engine's UDP listener and I/O loop (`dnsengine.core.server`, `ioloop`) with a
resolver that answers every query from its cache and a query log that only counts,
so what differs between the two runs is the socket I/O. Each round holds the loop
(a call that waits), sends `--burst` queries from the main thread, lets the loop go
and reads the answers: the loop always finds the same full socket, so the work it
does, and its instruction count, does not depend on timing. Counting only threads
started by `threading` (`--toggle-collect=thread_run`) leaves out the main thread's
sending and start-up.

    valgrind --tool=callgrind --toggle-collect=thread_run --callgrind-out-file=cg.out \\
        python -m devtools.bench.udp_batch --rounds 10
    GLORYHOLE_NO_EXTENSIONS=1 valgrind ... (the same)     # the pure-Python loop
    grep summary cg.out                                    # instructions; divide by rounds x burst

Rounds of 0 and of N give the fixed part and the part per query.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

import dns.message
import dns.rrset

from devtools.bench.common import CountingSink
from devtools.load.udp_burst import query
from dnsengine.core import batchio, wire
from dnsengine.core.cache import ReplyCache, TtlPolicy, entry_from_reply
from dnsengine.core.ioloop import IoLoop
from dnsengine.core.options import parse_blocking_mode
from dnsengine.core.resolver import Resolver, Snapshot
from dnsengine.core.rules import Matcher
from dnsengine.core.server import DNSServer
from dnsengine.core.stats import EngineStats


class NoForwarder:
    def forward(self, *args) -> bool:
        raise AssertionError("every query is answered from the cache")


def cached_resolver(names: int, stats: EngineStats) -> Resolver:
    resolver = Resolver(
        forwarder=NoForwarder(),
        blocking=parse_blocking_mode("null"),
        block_ttl=3600,
        cache=ReplyCache(names * 2),
        ttl_policy=TtlPolicy(),
        stats=stats,
        query_logger=CountingSink(),
    )
    resolver.apply_snapshot(Snapshot(matcher=Matcher.build(lists=[])))
    for i in range(names):
        name = f"q{i}.burst.test"
        query = dns.message.make_query(name, "A")
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(name + ".", 3600, "IN", "A", "192.0.2.1"))
        packed = reply.to_wire()
        scanned = wire.scan_reply(packed, wire.question_end(packed))
        entry = entry_from_reply(scanned, now=time.monotonic(), lifetime=3600, domain=name, status="cached")
        resolver.cache.put(wire.parse_query(query.to_wire()).key, entry)
    return resolver


def held_round(stats: EngineStats, loop: IoLoop, client: socket.socket, queries: list[bytes]) -> int:
    """Send `queries` while the loop is held, release it, read the answers; how many came back."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(30)

    threading.Thread(target=loop.call, args=(hold,), daemon=True).start()
    holding.wait(30)
    for packet in queries:
        client.send(packet)
    before = stats.total()
    release.set()
    # Wait without taking the GIL often, so the loop thread's count is not full of GIL
    # hand-offs to this thread; then read the answers waiting in the socket.
    deadline = time.monotonic() + 60
    while stats.total() < before + len(queries) and time.monotonic() < deadline:
        time.sleep(0.02)
    answered = 0
    client.settimeout(30)
    for _ in queries:
        try:
            client.recv(4096)
        except TimeoutError:
            break
        answered += 1
    return answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=200, help="queries per round (default 200)")
    parser.add_argument("--names", type=int, default=100)
    args = parser.parse_args()

    stats = EngineStats()
    loop = IoLoop("dns-io")
    server = DNSServer(cached_resolver(args.names, stats), stats, "127.0.0.1", 0, loop=loop)
    server.start()
    loop.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    client.connect(("127.0.0.1", server.port))
    queries = [query(i, f"q{i % args.names}.burst.test") for i in range(args.burst)]
    held_round(stats, loop, client, queries)  # warm: every reply rendered once
    answered = sum(held_round(stats, loop, client, queries) for _ in range(args.rounds))
    mode = "batched" if batchio.mmsg() is not None else "one datagram per call"
    print(f"{mode}: {answered} of {args.rounds * args.burst} answered")
    client.close()
    server.stop()
    loop.stop()


if __name__ == "__main__":
    main()
