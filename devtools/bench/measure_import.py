"""Peak memory of `manage.py importblocklist` and how long it makes other SQLite writers wait.

    python -m devtools.bench.measure_import [--names 1000000] [--kind hosts|short] [--then other|same] [--dir /tmp]

Generates a list file (`hosts`: `0.0.0.0 adsN.trackerM.example.com` lines;
`short`: `aN.ab` lines, 16M of them make ~200 MB) in a throw-away directory
with a fresh SQLite database, imports it with `importblocklist` as a child
process and, with --then, imports a second file into the same list (`other`:
every name different, `same`: the same file again). Meanwhile a probe thread
in this process takes the database's write lock every 50 ms (BEGIN IMMEDIATE,
10 min busy timeout), as the query log's writers do. For each import it prints
the exit status, wall time, the child's peak RSS (wait4) and the probe's
longest wait. Limits come from the environment as usual (for instance
GLORYHOLE_BLOCKLIST_MAX_BYTES=300000000). Figures: docs/blocklists.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_list(path: Path, kind: str, names: int, prefix: str) -> None:
    with open(path, "w") as out:
        if kind == "short":
            out.writelines(f"{prefix[0]}{i}.ab\n" for i in range(names))
        else:
            out.write("# generated\n")
            out.writelines(f"0.0.0.0 {prefix}{i}.tracker{i % 997}.example.com\n" for i in range(names))


class LockProbe(threading.Thread):
    def __init__(self, database: Path) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.waits: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        con = sqlite3.connect(self.database, isolation_level=None, timeout=600)
        while not self.stop.wait(0.05):
            started = time.monotonic()
            con.execute("BEGIN IMMEDIATE")
            con.execute("COMMIT")
            self.waits.append(time.monotonic() - started)
        con.close()


def import_file(env: dict[str, str], database: Path, name: str, path: Path) -> str:
    probe = LockProbe(database)
    probe.start()
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "importblocklist", name, str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    probe.stop.set()
    probe.join()
    longest = max(probe.waits, default=0.0)
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return (
        f"exit {child.returncode}, {seconds:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB, "
        f"longest lock wait {longest:.2f} s ({len(probe.waits)} probes)\n  {last[:300]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--kind", choices=("hosts", "short"), default="hosts")
    parser.add_argument("--then", choices=("other", "same"), help="a second import into the same list")
    parser.add_argument("--dir", default=None, help="where the throw-away directory goes (default: the temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="measure-import-", dir=args.dir))
    try:
        database = work / "db.sqlite3"
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{database}", GLORYHOLE_DATA_DIR=str(work))
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        first = work / "first.txt"
        write_list(first, args.kind, args.names, "ads")
        print(f"{args.names:,} names, {first.stat().st_size:,} bytes: {import_file(env, database, 'L', first)}")
        if args.then:
            second = first
            if args.then == "other":
                second = work / "second.txt"
                write_list(second, args.kind, args.names, "px")
            print(f"then {args.then}: {import_file(env, database, 'L', second)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
