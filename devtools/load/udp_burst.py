"""A fixed number of UDP queries in bursts, for counting the engine's system calls per query.

Sends `--count` queries to the engine on loopback in bursts of `--burst` (every
query of a burst sent before any reply is read), waits for each burst's replies
(or `--wait` seconds), and prints how many were answered. Names are
`q<i % names>.<suffix>`: with `--names` smaller than `--count` most are answered
from the cache, with `--names` = `--count` and a fresh `--suffix` every one is
forwarded. Attach `strace -c -f -p ENGINE_PID` around a run (docs/architecture.md).

    python -m devtools.load.udp_burst --port 5353 --count 20000 --burst 100 --names 100
"""

from __future__ import annotations

import argparse
import socket
import struct
import time


def query(qid: int, name: str) -> bytes:
    qname = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def run(host: str, port: int, count: int, burst: int, names: int, suffix: str, wait: float) -> tuple[int, float]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect((host, port))
    answered = 0
    started = time.monotonic()
    for start in range(0, count, burst):
        ids = range(start, min(count, start + burst))
        for i in ids:
            sock.send(query(i & 0xFFFF, f"q{i % names}.{suffix}"))
        want = len(ids)
        got = 0
        deadline = time.monotonic() + wait
        while got < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                sock.recv(4096)
            except (TimeoutError, ConnectionRefusedError):
                break
            got += 1
        answered += got
    return answered, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--names", type=int, default=100, help="distinct names (default 100: mostly cache hits)")
    parser.add_argument("--suffix", default="burst.test")
    parser.add_argument("--wait", type=float, default=2.0, help="seconds to wait for a burst's replies")
    args = parser.parse_args()
    answered, took = run(args.host, args.port, args.count, args.burst, args.names, args.suffix, args.wait)
    print(f"{answered} of {args.count} answered in {took:.2f}s")


if __name__ == "__main__":
    main()
