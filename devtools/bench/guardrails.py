"""What the blocking guard rails' traffic figures cost on a busy day of rollups.

    python -m devtools.bench.guardrails [--rows 400000] [--names 100000] [--runs 5]

Fills a fresh migrated SQLite file with --rows DomainRollup rows over the last
25 hours (each hour's names drawn from a pool of --names with Zipf-like weights, two
statuses each) and QueryRollup rows of the same totals, then times, median of --runs runs, the reads a
person's "block this" makes before anything is written
(dnsengine.selectors.block_verdict): a domain rule (one aggregate in SQLite),
a wildcard and a regex (the busiest querylog.traffic.RULE_NAMES_MAX names tried
in Python with the engine's matcher).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from devtools.bench.common import setup_django


def _fill(rows: int, names: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from querylog.models import DomainRollup, QueryRollup

    rng = random.Random(5)
    pool = [f"h{i}.site{i % 9973}.example.com" for i in range(names)]
    weights = [1 / (i + 1) for i in range(names)]
    now = timezone.now()
    first = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    hours = 25
    per_hour = rows // hours // 2
    with transaction.atomic():
        for h in range(hours):
            bucket = first + timedelta(hours=h)
            picked: set[str] = set()
            while len(picked) < per_hour:
                picked.update(rng.choices(pool, weights=weights, k=per_hour - len(picked)))
            batch = [
                DomainRollup(bucket=bucket, domain=d, status=s, count=rng.randrange(1, 50))
                for d in picked
                for s in ("forwarded", "cached")
            ]
            DomainRollup.objects.bulk_create(batch, batch_size=5000)
            # The hour's total as the writers keep it: the same queries, counted per minute and status.
            QueryRollup.objects.create(bucket=bucket, status="forwarded", count=sum(r.count for r in batch))


def _time(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-guardrails-"))
    try:
        setup_django(tmp, quiet_querylog=True)
        from dnsengine.guardrails import DOMAIN, REGEX, WILDCARD
        from dnsengine.selectors import block_verdict
        from querylog.models import DomainRollup

        started = time.perf_counter()
        _fill(args.rows, args.names)
        count = DomainRollup.objects.count()
        print(f"{count:,} DomainRollup rows filled in {time.perf_counter() - started:.1f} s")
        cases = [
            (DOMAIN, "site17.example.com"),
            (DOMAIN, "example.com"),
            (WILDCARD, "h1*.site1*.example.com"),
            (REGEX, r"^h\d*7\.site"),
        ]
        for kind, value in cases:
            verdict = block_verdict(kind, value)
            seconds = _time(lambda kind=kind, value=value: block_verdict(kind, value), args.runs)
            print(f"{kind:8} {value:26} {seconds * 1000:7.0f} ms  {verdict.summary}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
