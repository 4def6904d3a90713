"""Micro-benchmark of the engine's hot path, in-process (no sockets).

    python -m devtools.bench.engine

Reports the median cost per query, over several rounds, of: reading a query
with the lean parser vs dnslib, a full cache hit through Resolver.handle, and a
blocked name (first answer built, then served from the cache).
"""

from __future__ import annotations

import os
import platform
import statistics
import time

from devtools.bench.common import DiscardForwarder, NullTransport, setup_django

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


class CountingSink:
    def __init__(self) -> None:
        self.n = 0

    def log_async(self, entry) -> bool:
        self.n += 1
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


def per_call_us(fn, n: int = N) -> float:
    runs = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    query = dns.message.make_query("www.example.com", "A", use_edns=0, payload=1232).to_wire()
    blocked = dns.message.make_query("ads.tracker.test", "A").to_wire()
    resolver = Resolver(
        forwarder=NoForwarder(),
        blocking=parse_blocking_mode("null"),
        block_ttl=3600,
        cache=ReplyCache(1000),
        ttl_policy=TtlPolicy(),
        stats=EngineStats(),
        query_logger=CountingSink(),
    )
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
    missing = Resolver(
        forwarder=DiscardForwarder(),
        blocking=parse_blocking_mode("null"),
        block_ttl=3600,
        cache=ReplyCache(0),
        ttl_policy=TtlPolicy(),
        stats=EngineStats(),
        query_logger=CountingSink(),
    )
    missing.apply_snapshot(resolver.snapshot)
    missing.rendered_max = 0  # nothing rendered is kept: each round sees every name anew

    def miss(packet: bytes) -> None:
        missing._rendered.clear()
        missing.handle(packet, "127.0.0.1", transport, addr)

    rows = [
        ("parse: wire.parse_query", per_call_us(lambda: wire.parse_query(query))),
        ("parse: dnslib DNSRecord.parse", per_call_us(lambda: DNSRecord.parse(query), N // 5)),
        ("Resolver.handle, cache hit", per_call_us(lambda: resolver.handle(query, "127.0.0.1", transport, addr))),
        ("Resolver.handle, blocked name", per_call_us(lambda: resolver.handle(blocked, "127.0.0.1", transport, addr))),
        ("Resolver.handle, new blocked name", per_item_us(miss, unique_queries("n{}.ads.tracker.test"))),
        ("Resolver.handle, new name to forward", per_item_us(miss, unique_queries("n{}.www.example.com"))),
        ("Resolver.handle, new odd name to forward", per_item_us(miss, unique_queries("x=1\\032n{}.www.example.com"))),
    ]
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"median of {ROUNDS} rounds\n")
    print("| path | µs per query |\n| --- | ---: |")
    for label, value in rows:
        print(f"| {label} | {value:.2f} |")


if __name__ == "__main__":
    main()
