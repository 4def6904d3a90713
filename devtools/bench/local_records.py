"""What local records cost per query in-process (no sockets).

    python -m devtools.bench.local_records [--seconds S]

Resolver.handle, four ways, median of interleaved rounds:
- forwarded names (each query a new name, so every one goes through the decision:
  matcher, local records, special names, the forwarder) with no local records, with
  1,000 local names, and with 1,000 local names and 10 wildcards (the only case where
  a name without a record walks its labels);
- a local name with one address (served from the rendered replies after the first
  query) against a local name with three addresses (round-robin: built each query).
On a temporary SQLite database; the forwarder drops what it is given.
`make loadtest` measures the engine over sockets, on main and on this branch side by side.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from devtools.bench.common import DiscardForwarder, NullTransport, setup_django

ROUNDS = 7
N = 30_000


def one_round_us(resolver, packets: list[bytes], n: int) -> float:
    transport, addr = NullTransport(), ("127.0.0.1", 5555)
    started = time.perf_counter()
    for i in range(n):
        resolver.handle(packets[i % len(packets)], "127.0.0.1", transport, addr)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.0, help="stop starting rounds after this long (a smoke run)")
    args = parser.parse_args()
    setup_django(Path(tempfile.mkdtemp(prefix="gloryhole-bench-local-")))

    import dns.message

    from dnsengine.core.cache import ReplyCache, TtlPolicy
    from dnsengine.core.localrecords import LocalRecords
    from dnsengine.core.options import parse_blocking_mode
    from dnsengine.core.resolver import Resolver, Snapshot
    from dnsengine.core.stats import EngineStats

    names = [(f"host{i}.lan", "A", f"10.0.{i // 256}.{i % 256}", 300) for i in range(1000)]
    wildcards = [(f"*.dev{i}.lan", "A", "10.9.0.1", 300) for i in range(10)]
    rotating = [("web.lan", "A", f"10.1.0.{n}", 300) for n in range(1, 4)]
    snapshots = {
        "no local records": Snapshot(),
        "1,000 local names": Snapshot(local=LocalRecords.build(names + rotating)),
        "1,000 local names and 10 wildcards": Snapshot(local=LocalRecords.build(names + wildcards + rotating)),
    }

    def resolver(snapshot) -> Resolver:
        made = Resolver(forwarder=DiscardForwarder(), blocking=parse_blocking_mode("null"), block_ttl=3600,
                        cache=ReplyCache(10_000), ttl_policy=TtlPolicy(), stats=EngineStats())  # fmt: skip
        made.apply_snapshot(snapshot)
        return made

    forwarded = [dns.message.make_query(f"n{i}.a.b.example.com", "A").to_wire() for i in range(N)]
    cases = [(f"forwarded name, {label}", resolver(snap), forwarded) for label, snap in snapshots.items()]
    local = resolver(snapshots["1,000 local names"])
    cases.append(("local name, one address (rendered reply)", local,
                  [dns.message.make_query("host7.lan", "A").to_wire()]))  # fmt: skip
    cases.append(("local name, three addresses (round-robin)", local,
                  [dns.message.make_query("web.lan", "A").to_wire()]))  # fmt: skip
    for _, made, packets in cases:
        one_round_us(made, packets, min(len(packets), 1000))  # warm: the rendered replies filled
    runs: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    deadline = time.monotonic() + args.seconds if args.seconds else None
    rounds = 0
    for _ in range(ROUNDS):
        if deadline is not None and time.monotonic() > deadline:
            break
        for label, made, packets in cases:
            made.apply_snapshot(made.snapshot)  # forget the forwarded names' state between rounds
            runs[label].append(one_round_us(made, packets, N if deadline is None else N // 10))
        rounds += 1
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"median of {rounds} interleaved rounds (min..max)")  # fmt: skip
    print("| Resolver.handle | us per query |")
    print("| --- | --- |")
    for label, values in runs.items():
        print(f"| {label} | {statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f}) |")


if __name__ == "__main__":
    main()
