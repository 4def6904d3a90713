"""What client groups cost per query in-process (no sockets), on the fastest path.

    python -m devtools.bench.groups

Resolver.handle for blocked names answered from the rendered replies, 10 client
addresses in turn, three ways: one group without the rate limiter and the client-name
directory (the engine before client support); one group with both (today's default);
5 groups of 200 clients with both (the client's group looked up, keys prefixed by the
group's policy). Median of 7 interleaved rounds of 60,000 queries each, on a temporary
SQLite database.
`make loadtest-clients` measures the same over sockets, where the groups also split the
caches.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path

from devtools.bench.common import DiscardForwarder, NullTransport, setup_django

ROUNDS = 7
N = 60_000
SOURCES = [f"127.0.0.{n + 2}" for n in range(10)]


def warm(resolver, packets: list[bytes]) -> None:
    """Every (group, name) rendered once, so the timed rounds are all rendered-reply hits."""
    transport, addr = NullTransport(), ("127.0.0.1", 5555)
    for packet in packets:
        for source in SOURCES:
            resolver.handle(packet, source, transport, addr)


def one_round_us(resolver, packets: list[bytes]) -> float:
    transport, addr = NullTransport(), ("127.0.0.1", 5555)
    started = time.perf_counter()
    for i in range(N):
        resolver.handle(packets[i % len(packets)], SOURCES[i % len(SOURCES)], transport, addr)
    return (time.perf_counter() - started) / N * 1e6


def main() -> None:
    setup_django(Path(tempfile.mkdtemp(prefix="gloryhole-bench-groups-")))

    import dns.message

    from dnsengine.core.access import parse_networks
    from dnsengine.core.cache import ReplyCache, TtlPolicy
    from dnsengine.core.clients import ClientDirectory
    from dnsengine.core.options import parse_blocking_mode
    from dnsengine.core.ratelimit import RateLimiter
    from dnsengine.core.resolver import Resolver
    from dnsengine.core.stats import EngineStats
    from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, Client, ClientGroup, default_group
    from dnsengine.runtime.watcher import snapshot_load

    Blocklist.objects.all().delete()
    blocklist = Blocklist.objects.create(name="bench")
    BlockedDomain.objects.bulk_create(
        [BlockedDomain(blocklist=blocklist, domain=f"ad{i}.tracker.test") for i in range(1000)]
    )
    one_group = snapshot_load(1)
    groups = [default_group()] + [ClientGroup.objects.create(name=f"group-{i}") for i in range(1, 5)]
    for i, group in enumerate(groups):
        # A policy of its own, the same work: an allow entry no query asks for.
        AllowedDomain.objects.create(domain=f"group-{i}.nowhere.example").groups.add(group)
    for n in range(200):
        Client.objects.create(name=f"client-{n}", ip=f"127.0.{(n + 2) // 256}.{(n + 2) % 256}", group=groups[n % 5])
    directory = ClientDirectory()
    five_groups = snapshot_load(2, directory=directory)
    packets = [dns.message.make_query(f"ad{i}.tracker.test", "A").to_wire() for i in range(50)]

    def resolver(snapshot, with_clients: bool) -> Resolver:
        extras = {}
        if with_clients:
            exempt = parse_networks("127.0.0.0/8", "GLORYHOLE_RATE_LIMIT_EXEMPT")
            extras = {"rate_limiter": RateLimiter(1000, 60.0, exempt, 10000, EngineStats()), "clients": directory}
        made = Resolver(forwarder=DiscardForwarder(), blocking=parse_blocking_mode("null"), block_ttl=3600,
                        cache=ReplyCache(10_000), ttl_policy=TtlPolicy(), stats=EngineStats(), query_logger=None,
                        **extras)  # fmt: skip
        made.apply_snapshot(snapshot)
        return made

    configs = [
        ("one group, no rate limiter or client names", resolver(one_group, False)),
        ("one group, rate limiter (loopback exempt) and client names", resolver(one_group, True)),
        ("5 groups, 200 clients, rate limiter and client names", resolver(five_groups, True)),
    ]
    for _, made in configs:
        warm(made, packets)
    # Rounds go round-robin over the three, so a slow moment of the machine hits each alike.
    runs: dict[str, list[float]] = {label: [] for label, _ in configs}
    for _ in range(ROUNDS):
        for label, made in configs:
            runs[label].append(one_round_us(made, packets))
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"median of {ROUNDS} interleaved rounds of {N:,} queries (min..max)")  # fmt: skip
    print("| Resolver.handle, blocked name from the rendered replies | us per query |")
    print("| --- | --- |")
    for label, values in runs.items():
        print(f"| {label} | {statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f}) |")


if __name__ == "__main__":
    main()
