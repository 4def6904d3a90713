"""How long DNS answers stall while a running engine reloads a big blocklist.

    python -m devtools.bench.measure_reload [--names 2000000] [--dir /tmp]

Imports a generated hosts list of N names (see devtools.bench.measure_import) into a
fresh SQLite database in a throw-away directory, starts `manage.py rundns` on
a free loopback port, then asks it for `localhost` (answered by the engine
itself, no upstream) every 5 ms from this process. After a few seconds it bumps
the configuration generation, so the engine rebuilds its whole matcher in the
background, and keeps asking until the engine has logged the new generation
and a few seconds more. Prints the probe's round trips before and during the
reload (p50, p99, max) and how long the reload took. Loopback only; bounded
in time. Figures: docs/blocklists.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from devtools.bench.measure_import import write_list

ROOT = Path(__file__).resolve().parents[2]
QUERY = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0) + b"\x09localhost\x00\x00\x01\x00\x01"


def probe(port: int, seconds: float, stop: threading.Event | None = None) -> list[float]:
    """Round trips of one query every 5 ms for `seconds` (or until `stop`); a lost one counts as 2 s."""
    rtts = []
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        qid = 0
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            qid = (qid + 1) & 0xFFFF
            started = time.monotonic()
            sock.sendto(struct.pack("!H", qid) + QUERY[2:], ("127.0.0.1", port))
            try:
                while True:
                    data = sock.recv(512)
                    if data[:2] == struct.pack("!H", qid):
                        break
                rtts.append(time.monotonic() - started)
            except TimeoutError:
                rtts.append(2.0)
            time.sleep(0.005)
    return rtts


def summary(rtts: list[float]) -> str:
    if not rtts:
        return "no probes"
    ordered = sorted(rtts)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{len(rtts)} probes, p50 {statistics.median(rtts) * 1000:.2f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {max(rtts) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=2_000_000)
    parser.add_argument("--dir", default=None, help="where the throw-away directory goes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gh-reload-", dir=args.dir))
    engine = None
    try:
        database = work / "gloryhole.sqlite3"
        env = dict(os.environ)
        env.update(
            GLORYHOLE_DATA_DIR=str(work),
            DATABASE_URL=f"sqlite:///{database}",
            GLORYHOLE_UPSTREAMS="127.0.0.1:9",
            GLORYHOLE_METRICS_PORT="0",
            GLORYHOLE_BLOCKLIST_UPDATE_HOURS="0",
            GLORYHOLE_QUERY_LOG_ENABLED="0",
            GLORYHOLE_RELOAD_INTERVAL="0.5",
            PYTHONUNBUFFERED="1",
        )
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
        path = work / "list.txt"
        write_list(path, "hosts", args.names, "ads")
        subprocess.run([*manage, "importblocklist", "big", str(path)], cwd=ROOT, env=env, check=True)
        path.unlink()

        engine = subprocess.Popen(
            [*manage, "rundns", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        port = None
        for line in engine.stdout:
            if "listening on" in line:
                port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
                break
        if port is None:
            raise SystemExit("rundns did not start")
        loaded = threading.Event()
        seen: list[str] = []

        def follow() -> None:
            for line in engine.stdout:
                seen.append(line)
                if "configuration generation" in line and "loaded" in line:
                    loaded.set()

        threading.Thread(target=follow, daemon=True).start()
        time.sleep(1.0)
        before = probe(port, 3.0)
        with sqlite3.connect(database) as db:
            db.execute("UPDATE dnsengine_configgeneration SET value = value + 1")
        bumped = time.monotonic()
        during = probe(port, 120.0, stop=loaded)
        took = time.monotonic() - bumped
        after = probe(port, 2.0)
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {args.names:,} names")
        print(f"before the reload: {summary(before)}")
        print(f"during the reload ({took:.1f} s until the engine logged it): {summary(during)}")
        print(f"after: {summary(after)}")
        for line in seen:
            if "configuration generation" in line:
                print("engine:", line.strip())
    finally:
        if engine is not None:
            engine.terminate()
            try:
                engine.wait(timeout=30)
            except subprocess.TimeoutExpired:
                engine.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
