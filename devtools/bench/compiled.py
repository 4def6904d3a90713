"""Instructions per query of the DNS core, compiled twin against pure Python, under callgrind.

    python -m devtools.bench.compiled                 # every path, compiled vs pure (needs make ext, valgrind)
    python -m devtools.bench.compiled --leave-out     # also: all compiled but one module, each in turn
    python -m devtools.bench.compiled --run hit -n 5000 [--python wire,cache]   # one path, no valgrind

Instruction counts (``valgrind --tool=callgrind``), not time: they repeat on a busy machine,
where timings do not. Each figure is (instructions with n queries - with none) / n, where
both runs build the same packets, so start-up and set-up cancel out. No Django, no database.

Paths: ``hit`` a repeated name from the rendered replies, ``blocked`` a repeated blocked name,
``new-blocked`` a new name under a blocked domain each time, ``forward`` a new name handed to
the forwarder (which drops it), ``udp`` cache hits through the UDP listener's read loop on a
loopback socket (the test's own sendto/recvfrom included, the same in both modes).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

from dnsengine.core import compiled

PATHS = ("hit", "blocked", "new-blocked", "forward", "udp")


def _force_python(names: list[str]) -> None:
    """Decide these listed modules as Python before anything imports them (the bench's per-module view)."""
    finder = compiled.install()
    for name in names:
        full = name if name.startswith("dnsengine.") else f"dnsengine.core.{name}"
        finder.decisions[full] = compiled.ModuleStatus(compiled.PYTHON_MODE, "bench", compiled.source_path(full))


def run(path: str, n: int, loops: int) -> None:
    import socket
    import time

    import dns.message
    import dns.rrset

    from devtools.bench.common import DiscardForwarder, NullTransport
    from dnsengine.core import wire
    from dnsengine.core.cache import ReplyCache, TtlPolicy, entry_from_reply
    from dnsengine.core.ioloop import IoLoop
    from dnsengine.core.options import parse_blocking_mode
    from dnsengine.core.resolver import Resolver, Snapshot
    from dnsengine.core.rules import Matcher
    from dnsengine.core.server import DNSServer, UdpTransport
    from dnsengine.core.stats import EngineStats

    class Sink:
        def log_async(self, entry) -> bool:
            return True

    def resolver(cache: int) -> Resolver:
        r = Resolver(forwarder=DiscardForwarder(), blocking=parse_blocking_mode("null"), block_ttl=3600,
                     cache=ReplyCache(cache), ttl_policy=TtlPolicy(), stats=EngineStats(),
                     query_logger=Sink())  # fmt: skip
        r.apply_snapshot(Snapshot(matcher=Matcher.build(lists=[("bench", ["tracker.test"])])))
        return r

    query = dns.message.make_query("www.example.com", "A", use_edns=0, payload=1232).to_wire()
    hits = resolver(1000)
    reply = dns.message.make_response(dns.message.from_wire(query))
    reply.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "A", "192.0.2.1"))
    packed = reply.to_wire()
    scanned = wire.scan_reply(packed, wire.question_end(packed))
    entry = entry_from_reply(scanned, now=time.monotonic(), lifetime=300, domain="www.example.com", status="cached")
    hits.cache.put(wire.parse_query(query).key, entry)
    transport, addr = NullTransport(), ("127.0.0.1", 5555)
    for _ in range(2):  # the first answer renders the reply; the rest are what is measured
        hits.handle(query, "127.0.0.1", transport, addr)
    if path in ("hit", "blocked"):
        packet = query if path == "hit" else dns.message.make_query("ads.tracker.test", "A").to_wire()
        handle = hits.handle
        handle(packet, "127.0.0.1", transport, addr)
        for _ in range(n * loops):
            handle(packet, "127.0.0.1", transport, addr)
    elif path in ("new-blocked", "forward"):
        template = "n{}.ads.tracker.test" if path == "new-blocked" else "n{}.www.example.com"
        packets = [dns.message.make_query(template.format(i), "A").to_wire() for i in range(n)]
        missing = resolver(0)
        missing.rendered_max = 0
        for packet in packets[: n * loops]:
            missing.handle(packet, "127.0.0.1", transport, addr)
    elif path == "udp":
        server = DNSServer(hits, hits.stats, "127.0.0.1", 0, loop=IoLoop())
        server.bind()
        server.udp_sock.setblocking(False)
        server._udp_transport = UdpTransport(server.udp_sock)  # start() without the loop thread
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        target = ("127.0.0.1", server.port)
        batch = 32
        for _ in range(n // batch * loops):
            for _ in range(batch):
                client.sendto(query, target)
            server._on_udp_readable(server.udp_sock)
            for _ in range(batch):
                client.recv(4096)
        client.close()
        server.udp_sock.close()
        server.tcp.sock.close()
    else:
        raise SystemExit(f"unknown path {path}")


def instructions(path: str, n: int, loops: int, env: dict[str, str], python: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
               "devtools.bench.compiled", "--run", path, "-n", str(n), "--loops", str(loops)]  # fmt: skip
        if python:
            cmd += ["--python", python]
        subprocess.run(cmd, env=os.environ | {"PYTHONHASHSEED": "0"} | env, check=True, capture_output=True)
        with open(out) as f:
            return int(re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M).group(1))


def per_query(path: str, n: int, env: dict[str, str], python: str = "") -> float:
    return (instructions(path, n, 1, env, python) - instructions(path, n, 0, env, python)) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", choices=PATHS, help="run one path (what callgrind measures)")
    parser.add_argument("-n", type=int, default=4000, help="queries per path (default %(default)s)")
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--python", default="", help="listed modules to import as Python (comma-separated)")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--leave-out", action="store_true", help="also each module as Python, the rest compiled")
    args = parser.parse_args()
    if args.run:
        _force_python([m for m in args.python.split(",") if m])
        run(args.run, args.n, args.loops)
        return
    states = compiled.status()
    if any(s.mode != compiled.COMPILED_MODE for s in states.values()):
        raise SystemExit(f"the core is not compiled here: {compiled.summary()} (make ext)")
    paths = args.paths.split(",")
    print(f"instructions per query (callgrind, n={args.n}); Python {sys.version.split()[0]}\n")
    print("| path | pure Python | compiled | compiled / pure |\n| --- | ---: | ---: | ---: |")
    for path in paths:
        pure = per_query(path, args.n, {compiled.ENV_DISABLE: "1"})
        fast = per_query(path, args.n, {})
        print(f"| {path} | {pure:,.0f} | {fast:,.0f} | {fast / pure:.2f} |", flush=True)
    if args.leave_out:
        print("\nall compiled but one module (instructions per query; + is what compiling it saves)\n")
        print("| module | " + " | ".join(paths) + " |\n| --- |" + " ---: |" * len(paths))
        base = {path: per_query(path, args.n, {}) for path in paths}
        for name in compiled.COMPILED:
            short = name.rsplit(".", 1)[1]
            cells = [per_query(path, args.n, {}, short) - base[path] for path in paths]
            print(f"| {short} | " + " | ".join(f"{c:+,.0f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
