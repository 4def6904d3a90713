"""The floor of a Python DNS server: one thread, recvfrom, a dict of replies, sendto.

    python -m devtools.load.plain_server --port 5399      # loopback only; Ctrl-C stops it

Answers every query with an empty NOERROR reply built once per distinct query
(minus its ID) and then served from a dict: no parsing, no logging, nothing else.
What dnsperf gets from it on a machine is what two syscalls and a dict lookup cost
there, the bound any Python engine's cache hits can approach (docs/loadtest.md).
"""

from __future__ import annotations

import argparse
import socket


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5399)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((args.host, args.port))
    print(f"plain server on {args.host}:{sock.getsockname()[1]}", flush=True)
    replies: dict[bytes, bytes] = {}
    recvfrom, sendto = sock.recvfrom, sock.sendto
    try:
        while True:
            data, addr = recvfrom(2048)
            if len(data) < 12 or data[2] & 0x80:  # too short, or a response
                continue
            reply = replies.get(data[2:])
            if reply is None:
                if len(replies) > 100_000:
                    replies.clear()
                # QR and RA set, the rest of the header and the question as asked.
                reply = replies[data[2:]] = bytes([data[2] | 0x80, 0x80]) + data[4:]
            sendto(data[:2] + reply, addr)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
