"""CPU per thread of a running process, and of other processes, over a window (from /proc).

    python -m devtools.load.threadcpu PID [--others PID,PID] [--seconds 6]

Run it while a load test runs (`make loadtest` prints nothing of this): it prints
user and system CPU in % of one CPU for every thread of PID, named as Python names
them when py-spy is installed (`py-spy dump`), else by thread id; then each of
--others as a whole (dnsperf, the fake upstream), and the whole machine. docs/loadtest.md
quotes it for where an engine's CPU goes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from devtools.load.harness import BUSY_FIELDS

TICK = os.sysconf("SC_CLK_TCK")


def _times(stat_path: Path) -> tuple[float, float]:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK  # utime, stime


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields[i] for i in BUSY_FIELDS if i < len(fields)) / TICK


def _thread_names(pid: int) -> dict[str, str]:
    """Native thread id -> Python thread name, from `py-spy dump` when it is there."""
    spy = shutil.which("py-spy") or str(Path(".venv/bin/py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        out = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(r"Thread (?:0x[0-9a-f]+ )?\(?(\d+)\)?.*?\"(.*?)\"", out)}


def snapshot(pid: int, others: list[int]) -> dict[str, tuple[float, float]]:
    out = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        try:
            out[task.name] = _times(task / "stat")
        except OSError:  # the thread ended
            continue
    for other in others:
        try:
            out[f"pid {other}"] = _times(Path(f"/proc/{other}/stat"))
        except OSError:
            continue
    out["machine"] = (_machine_busy(), 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--others", default="", help="comma-separated PIDs measured as a whole")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    others = [int(p) for p in args.others.split(",") if p]
    names = _thread_names(args.pid)
    before = snapshot(args.pid, others)
    time.sleep(args.seconds)
    after = snapshot(args.pid, others)
    print(f"CPU in % of one CPU over {args.seconds:g} s")
    for key, (user1, sys1) in after.items():
        if key not in before:
            continue
        user0, sys0 = before[key]
        user, system = (user1 - user0) / args.seconds * 100, (sys1 - sys0) / args.seconds * 100
        if key == "machine":
            print(f"{'whole machine (all CPUs)':32} {user:6.1f}")
        elif user + system >= 0.5:
            label = key if key.startswith("pid ") else f"{names.get(key, 'thread')} ({key})"
            print(f"{label:32} user {user:5.1f}  system {system:5.1f}")


if __name__ == "__main__":
    main()
