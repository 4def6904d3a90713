"""One query-log run for callgrind: instructions the engine process spends per logged row.

    python -m devtools.bench.querylog_instructions --template DB --mode pool --rows 4000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m devtools.bench.querylog_instructions --template DB --mode process --rows 4000

Queues ``--rows`` entries, starts the logger and closes it (so every row is written),
on a copy of a migrated SQLite file (``--template``; made with ``--make-template`` outside
valgrind, where migrating is fast). Run it under callgrind twice with different
``--rows`` and divide the difference of the "Collected" totals by the difference of rows:
what is left is the per-row cost in this process, start-up cancelled out. callgrind does
not follow the writer process (no ``--trace-children``), so mode ``process`` counts the
engine's side only. Instruction counts do not depend on the machine's load, unlike time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devtools.bench.common import WRITE_BATCH, home_entries, setup_django


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, required=True, help="a migrated SQLite file (copied, not changed)")
    parser.add_argument("--make-template", action="store_true", help="create and migrate --template, then exit")
    parser.add_argument("--mode", choices=("noop", "pool", "process"), default="pool")
    parser.add_argument("--rows", type=int, default=4000)
    args = parser.parse_args(argv)

    if args.make_template:
        args.template.parent.mkdir(parents=True, exist_ok=True)
        setup_django(args.template.parent, database=args.template)
        return 0
    with tempfile.TemporaryDirectory(prefix="gloryhole-bench-") as tmpdir:
        db = Path(tmpdir) / "run.sqlite3"
        shutil.copyfile(args.template, db)
        setup_django(Path(tmpdir), database=db, migrate=False, quiet_querylog=True)
        from querylog.logger.pool import QueryLogger
        from querylog.logger.process import ProcessQueryLogger
        from querylog.models import QueryLog

        entries = home_entries(args.rows)
        n = len(entries) + 1
        if args.mode == "process":
            logger = ProcessQueryLogger(n, 1, WRITE_BATCH, 0.5).start()
            while not logger.child_pids:  # the same wait in every run: cancelled out by the difference
                time.sleep(0.01)
        elif args.mode == "pool":
            logger = QueryLogger(n, 1, WRITE_BATCH, 0.5).start()
        else:
            logger = QueryLogger(n, 1, WRITE_BATCH, 0.5, writer=lambda batch: None).start()
        for e in entries:
            logger.log_async(e)
        report = logger.close(timeout=3600)
        if report.written != args.rows or (args.mode != "noop" and QueryLog.objects.count() != args.rows):
            print(f"bench: wrote {report.written} of {args.rows}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
