"""Micro-benchmark of the engine's hot path, in-process (no sockets).

    python -m devtools.bench.engine
    python -m devtools.bench.engine --only unique --count 2000 --rounds 3

Reports the median cost per query, over several rounds, of: reading a query
with the lean parser vs dnslib, a full cache hit through Resolver.handle, and a
blocked name (first answer built, then served from the cache).

`--only blocked|repeated|unique` runs the rows of one path of `make loadtest`'s mix
(no parser rows), and `--count`/`--rounds` make a run short enough for
`valgrind --tool=callgrind`: the instructions per query of a path are the difference
between two runs with different `--rounds` (the set-up cancels out), divided by the
extra queries (`--rounds` x `--count` x the rows run); docs/loadtest.md has the commands.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import struct
import time

from devtools.bench.common import CountingSink, DiscardForwarder, NullTransport, setup_django

setup_django(migrate=False)

import dns.message  # noqa: E402
import dns.rrset  # noqa: E402
from dnslib import DNSRecord  # noqa: E402

from dnsengine.core import wire  # noqa: E402
from dnsengine.core.cache import ReplyCache, TtlPolicy  # noqa: E402
from dnsengine.core.options import parse_blocking_mode  # noqa: E402
from dnsengine.core.resolver import Resolver, Snapshot  # noqa: E402
from dnsengine.core.rules import Matcher  # noqa: E402
from dnsengine.core.stats import EngineStats  # noqa: E402

ROUNDS = 5
N = 50_000


def bench_resolver(forwarder, cache_size: int) -> Resolver:
    """A resolver with null blocking, a counting log sink and its own stats, as every path here uses."""
    return Resolver(
        forwarder=forwarder,
        blocking=parse_blocking_mode("null"),
        block_ttl=3600,
        cache=ReplyCache(cache_size),
        ttl_policy=TtlPolicy(),
        stats=EngineStats(),
        query_logger=CountingSink(),
    )


class AnsweringForwarder:
    """Answers every query at once with one A record: the forwarded path to the reply sent."""

    def forward(self, qname_wire: bytes, qtype: int, qclass: int, do: bool, callback) -> bool:
        reply = (
            wire.pack_header(0, wire.FLAG_QR | wire.FLAG_RD | wire.FLAG_RA, 1, 1, 0, 0)
            + qname_wire
            + struct.pack("!HHHHHIH", qtype, qclass, 0xC00C, wire.TYPE_A, wire.CLASS_IN, 300, 4)
            + b"\xc0\x00\x02\x01"
        )
        callback(reply, "127.0.0.1:53")
        return True


class NoForwarder:
    def forward(self, *args) -> bool:
        raise AssertionError("the benchmark must not miss the cache")


def unique_queries(template: str, n: int = N) -> list[bytes]:
    return [dns.message.make_query(template.format(i), "A").to_wire() for i in range(n)]


def per_item_us(fn, items: list) -> float:
    """Median cost of fn(item) over each item once per round: every call is a first (a cache miss)."""
    runs = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - started) / len(items) * 1e6)
    return statistics.median(runs)


def per_call_us(fn, n: int | None = None) -> float:
    n = N if n is None else n
    runs = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


# The rows of each path of the load test's mix (devtools/load/harness.py MIX_KINDS).
PATHS = {
    "blocked": ("Resolver.handle, blocked name", "Resolver.handle, new blocked name"),
    "repeated": ("Resolver.handle, cache hit",),
    "unique": (
        "Resolver.handle, new name to forward",
        "Resolver.handle, new odd name to forward",
        "Resolver.handle, new name answered by the upstream",
    ),
}


def main() -> None:
    global ROUNDS, N
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(PATHS), default="", help="the rows of one path (default: all)")
    parser.add_argument("--count", type=int, default=N, help=f"queries per row and round (default {N:,})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds; the median is shown (default {ROUNDS})")
    args = parser.parse_args()
    ROUNDS, N = args.rounds, args.count
    query = dns.message.make_query("www.example.com", "A", use_edns=0, payload=1232).to_wire()
    blocked = dns.message.make_query("ads.tracker.test", "A").to_wire()
    resolver = bench_resolver(NoForwarder(), cache_size=1000)
    resolver.apply_snapshot(Snapshot(matcher=Matcher.build(lists=[("bench", ["tracker.test"])])))
    # Seed the cache with an upstream-style answer for the cached case.
    reply = dns.message.make_response(dns.message.from_wire(query))
    reply.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "A", "192.0.2.1"))
    packed = reply.to_wire()
    scanned = wire.scan_reply(packed, wire.question_end(packed))
    from dnsengine.core.cache import entry_from_reply

    parsed = wire.parse_query(query)
    resolver.cache.put(
        parsed.key,
        entry_from_reply(scanned, now=time.monotonic(), lifetime=300, domain="www.example.com", status="cached"),
    )
    transport = NullTransport()
    addr = ("127.0.0.1", 5555)
    # Misses: every name new, so no rendered reply and no cache entry: the text form of the
    # name, the matcher, local and special names, then the block answer or the forwarder.
    missing = bench_resolver(DiscardForwarder(), cache_size=0)
    missing.apply_snapshot(resolver.snapshot)
    missing.rendered_max = 0  # nothing rendered is kept: each round sees every name anew

    def miss(packet: bytes) -> None:
        missing._rendered.clear()
        missing.handle(packet, "127.0.0.1", transport, addr)

    # The same, with the upstream's answer scanned, cached and rendered (the cache emptied
    # before each query, so every round sees every name anew).
    answered = bench_resolver(AnsweringForwarder(), cache_size=1000)
    answered.apply_snapshot(resolver.snapshot)
    answered.rendered_max = 0

    def answered_miss(packet: bytes) -> None:
        answered._rendered.clear()
        answered.cache.clear()
        answered.handle(packet, "127.0.0.1", transport, addr)

    # Each row is run when chosen, so a callgrind run of one path counts that path alone.
    benches = [
        ("parse: wire.parse_query", lambda: per_call_us(lambda: wire.parse_query(query))),
        ("parse: dnslib DNSRecord.parse", lambda: per_call_us(lambda: DNSRecord.parse(query), max(1, N // 5))),
        ("Resolver.handle, cache hit",
         lambda: per_call_us(lambda: resolver.handle(query, "127.0.0.1", transport, addr))),
        ("Resolver.handle, blocked name",
         lambda: per_call_us(lambda: resolver.handle(blocked, "127.0.0.1", transport, addr))),
        ("Resolver.handle, new blocked name", lambda: per_item_us(miss, unique_queries("n{}.ads.tracker.test", N))),
        ("Resolver.handle, new name to forward",
         lambda: per_item_us(miss, unique_queries("n{}.www.example.com", N))),
        ("Resolver.handle, new odd name to forward",
         lambda: per_item_us(miss, unique_queries("x=1\\032n{}.www.example.com", N))),
        ("Resolver.handle, new name answered by the upstream",
         lambda: per_item_us(answered_miss, unique_queries("a{}.www.example.com", N))),
    ]  # fmt: skip
    wanted = PATHS[args.only] if args.only else [label for label, _ in benches]
    rows = [(label, run()) for label, run in benches if label in wanted]
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"median of {ROUNDS} rounds\n")
    print("| path | µs per query |\n| --- | ---: |")
    for label, value in rows:
        print(f"| {label} | {value:.2f} |")


if __name__ == "__main__":
    main()
