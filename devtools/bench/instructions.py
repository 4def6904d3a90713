"""Instructions per query of each path of devtools.bench.engine, counted by callgrind.

    python -m devtools.bench.instructions [--paths blocked,repeated,unique] [--count 2000]

Runs `devtools.bench.engine --only PATH` under `valgrind --tool=callgrind` twice, with
`--rounds 1` and `--rounds 1+EXTRA`, and prints (Ir of the second - Ir of the first) /
(EXTRA x count x rows of the path): Python's start, Django's set-up and building the
queries cancel out. Instruction counts do not depend on what else the machine runs,
so, unlike wall time, they compare two builds on a busy box. PYTHONHASHSEED is fixed
so that both runs hash alike.

It measures whatever `import dnsengine.core.wire` finds from the current directory:
the compiled modules when their .so files sit beside the .py, else the pure Python.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = {"blocked": 2, "repeated": 1, "unique": 3}  # devtools.bench.engine.PATHS


def total_ir(path: str, count: int, rounds: int, out: Path) -> int:
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
            "devtools.bench.engine", "--only", path, "--count", str(count), "--rounds", str(rounds)]  # fmt: skip
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for line in out.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", default="blocked,repeated,unique")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--extra", type=int, default=2, help="extra rounds of the second run (default 2)")
    args = parser.parse_args()
    print("| path | instructions per query |\n| --- | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths.split(","):
            base = total_ir(path, args.count, 1, Path(tmp) / f"{path}.1")
            more = total_ir(path, args.count, 1 + args.extra, Path(tmp) / f"{path}.2")
            per_query = (more - base) / (args.extra * args.count * ROWS[path])
            print(f"| {path} | {per_query:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
