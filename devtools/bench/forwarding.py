"""What conditional-forwarding rules cost per query in-process (no sockets, no database).

    python -m devtools.bench.forwarding [--rounds 7] [--queries 60000]

Resolver.handle on the forwarded miss path (parse, cache miss, block decision, special
names, the rule lookup, the hand-over to a forwarder that drops the query, so nothing
is ever cached), three ways: no rules (the snapshot has none: one attribute read); 20
rules of which none covers the names (half end in the names' top-level label, so the
lookup walks every suffix); the same 20 with every name under one of them. Then the
rule lookup alone (ForwardingRules.route). Median of interleaved rounds.
`make loadtest` with `--forwarding-rules 20` (docs/forwarding.md) measures it over sockets.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from devtools.bench.common import DiscardForwarder, NullTransport

ROUNDS = 7
N = 60_000


def rule_suffixes(count: int) -> list[str]:
    """`count` suffixes, half ending in `example` (the names' top-level label), none covering them."""
    half = count // 2
    return [f"corp{i}.example" for i in range(half)] + [f"lan{i}" for i in range(count - half)]


def one_round_us(resolver, packets: list[bytes], n: int) -> float:
    transport, addr = NullTransport(), ("127.0.0.1", 5555)
    handle = resolver.handle
    started = time.perf_counter()
    for i in range(n):
        handle(packets[i % len(packets)], "127.0.0.2", transport, addr)
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--queries", type=int, default=N, help="queries per round and configuration")
    args = parser.parse_args(argv)

    import dns.message

    from dnsengine.core.cache import ReplyCache, TtlPolicy
    from dnsengine.core.forwarding import ForwardingRules, Route
    from dnsengine.core.options import parse_blocking_mode
    from dnsengine.core.resolver import Resolver, Snapshot
    from dnsengine.core.stats import EngineStats

    def resolver(rules: ForwardingRules | None) -> Resolver:
        made = Resolver(forwarder=DiscardForwarder(), blocking=parse_blocking_mode("null"), block_ttl=3600,
                        cache=ReplyCache(10_000), ttl_policy=TtlPolicy(), stats=EngineStats(),
                        query_logger=None)  # fmt: skip
        made.apply_snapshot(Snapshot(forwarding=rules))
        return made

    suffixes = rule_suffixes(20)
    twenty = ForwardingRules(Route(s, None, (), f"forward:{s}") for s in suffixes)
    # Names of the load test's shape: a miss under a second-level name.
    outside = [f"u{i}.miss{i % 101}.example" for i in range(500)]
    inside = [f"u{i}.host{i % 101}.{suffixes[i % len(suffixes)]}" for i in range(500)]
    packets_out = [dns.message.make_query(name, "A").to_wire() for name in outside]
    packets_in = [dns.message.make_query(name, "A").to_wire() for name in inside]
    configs = [
        ("no rules", resolver(None), packets_out),
        ("20 rules, names under none", resolver(twenty), packets_out),
        ("20 rules, every name under one", resolver(twenty), packets_in),
    ]
    runs: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    lookups: dict[str, list[float]] = {"route(), name under none": [], "route(), name under one": []}
    for _ in range(args.rounds):
        for label, made, packets in configs:
            runs[label].append(one_round_us(made, packets, args.queries))
        for label, names in zip(lookups, (outside, inside), strict=True):
            route = twenty.route
            started = time.perf_counter()
            for i in range(args.queries):
                route(names[i % 500])
            lookups[label].append((time.perf_counter() - started) / args.queries * 1e9)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"median of {args.rounds} interleaved rounds of {args.queries:,} queries (min..max)")  # fmt: skip
    print("| Resolver.handle, forwarded miss (dropped by the forwarder) | us per query |")
    print("| --- | --- |")
    for label, values in runs.items():
        print(f"| {label} | {statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f}) |")
    print("| ForwardingRules with 20 rules | ns per lookup |")
    print("| --- | --- |")
    for label, values in lookups.items():
        print(f"| {label} | {statistics.median(values):.0f} ({min(values):.0f}..{max(values):.0f}) |")


if __name__ == "__main__":
    main()
