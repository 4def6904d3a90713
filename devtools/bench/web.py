"""`make bench-web`: response times of the dashboard and the history on a big query log.

    python -m devtools.bench.web [--rows 5000000] [--days 7] [--repeat 20] [--keep]

Builds a TEMPORARY SQLite database (GLORYHOLE_DATA_DIR and DATABASE_URL point
into a fresh temp folder; the real data/ is never touched), migrates it, bulk
loads N synthetic QueryLog rows plus the matching rollups with raw executemany
in one transaction (indexes dropped during the load and rebuilt after, as a
restore would), then times pages through Django's test client, signed in as
staff, and prints p50/p95 per page. Not a test: nothing fails on slow numbers.

The traffic is shaped like a small office: clients and domains follow Zipf-like
popularity (a few busy clients and hot domains, a long tail), ~15 % of queries
hit blocklisted tracker domains, a third are answered from cache, timestamps are
spread over the last `--days` days with a day/night swing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devtools.bench.common import setup_django

BASE_DIR = Path(__file__).resolve().parents[2]

TLDS = ("com", "net", "org", "io", "de", "co.uk", "tv", "app")
WORDS = (
    "news cloud cdn mail shop video img static api auth login chat maps docs store music photo game "
    "weather bank social search update sync push stream media files wiki blog forum travel"
).split()
TRACKER_WORDS = "ads adserver track pixel metrics telemetry beacon analytics doubleclick banner".split()
QTYPES = (("A", 58), ("AAAA", 30), ("HTTPS", 8), ("PTR", 2), ("TXT", 1), ("SRV", 1))


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def make_domains(rng: random.Random, count: int, blocked_share: float) -> tuple[list[str], list[bool]]:
    """`count` distinct names, shuffled so popularity does not follow the naming order."""
    names: list[str] = []
    blocked: list[bool] = []
    seen: set[str] = set()
    while len(names) < count:
        is_blocked = rng.random() < blocked_share
        if is_blocked:
            tracker = f"{rng.choice(TRACKER_WORDS)}{rng.randint(1, 99)}"
            name = f"{tracker}.{rng.choice(WORDS)}{rng.randint(1, 400)}.{rng.choice(TLDS)}"
        else:
            base = f"{rng.choice(WORDS)}{rng.randint(1, 2000)}.{rng.choice(TLDS)}"
            name = base if rng.random() < 0.3 else f"{rng.choice(WORDS)}.{base}"
        if name not in seen:
            seen.add(name)
            names.append(name)
            blocked.append(is_blocked)
    return names, blocked


def make_clients(count: int) -> list[str]:
    clients = [f"192.168.1.{i}" for i in range(2, 2 + min(count, 200))]
    clients += [f"fd00::{i:x}" for i in range(1, 1 + max(0, count - len(clients)))]
    return clients[:count]


def load(db_path: Path, rows: int, days: int, seed: int) -> dict[str, object]:
    """Fill QueryLog and the four rollup tables; return a few names worth searching for."""
    from querylog.rollups import time_bucket

    rng = random.Random(seed)
    domains, blocked = make_domains(rng, 30_000, 0.12)
    clients = make_clients(60)
    domain_cum = list(_cumulative(zipf_weights(len(domains), 1.0)))
    client_cum = list(_cumulative(zipf_weights(len(clients), 1.2)))
    qtype_names = [q for q, _ in QTYPES]
    qtype_cum = list(_cumulative([w for _, w in QTYPES]))

    now = datetime.now(UTC).replace(tzinfo=None)
    start = now - timedelta(days=days)
    span_us = days * 86_400 * 1_000_000

    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")
    indexes = [
        (name, sql)
        for name, sql in con.execute(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type='index' AND tbl_name='querylog_querylog' AND sql IS NOT NULL"
        )
    ]
    for name, _ in indexes:
        con.execute(f'DROP INDEX "{name}"')

    minute_counts: dict[tuple[str, str], int] = {}
    domain_counts: dict[tuple[str, str, str], int] = {}
    client_counts: dict[tuple[str, str], int] = {}
    answer_counts: dict[tuple[str, str, str, int], int] = {}
    chunk = 200_000
    started = time.monotonic()
    con.execute("BEGIN")
    insert = (
        "INSERT INTO querylog_querylog (timestamp, client, protocol, domain, qtype, rcode, status, rule, upstream,"
        " duration_us, engine) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        d_idx = rng.choices(range(len(domains)), cum_weights=domain_cum, k=n)
        c_idx = rng.choices(range(len(clients)), cum_weights=client_cum, k=n)
        q_idx = rng.choices(range(len(qtype_names)), cum_weights=qtype_cum, k=n)
        batch = []
        for j in range(n):
            i = done + j
            # Evenly spread, then bent by a day/night swing (busier in the evening).
            frac = i / rows
            offset = frac * span_us
            offset += math.sin(frac * days * 2 * math.pi) * 3_600_000_000 * 2
            offset = min(max(offset, 0), span_us - 1)
            ts = start + timedelta(microseconds=int(offset))
            domain = domains[d_idx[j]]
            client = clients[c_idx[j]]
            roll = rng.random()
            if blocked[d_idx[j]]:
                status, rule, upstream, rcode, took = "blocked", "list:StevenBlack", "", "NOERROR", 40
            elif roll < 0.34:
                status, rule, upstream, rcode, took = "cached", "", "", "NOERROR", 60
            elif roll < 0.35:
                status, rule, upstream, rcode, took = "error", "", "1.1.1.1:53", "SERVFAIL", 2_000_000
            elif roll < 0.36:
                status, rule, upstream, rcode, took = "local", "local:lan", "", "NOERROR", 30
            else:
                nx = roll > 0.985
                status, rule, upstream = "forwarded", "", "1.1.1.1:53" if roll < 0.7 else "9.9.9.9:53"
                rcode, took = ("NXDOMAIN" if nx else "NOERROR"), 8000 + int(roll * 30000)
            stamp = str(ts)
            batch.append(
                (stamp, client, "udp", domain, qtype_names[q_idx[j]], rcode, status, rule, upstream, took, "bench")
            )
            # The rollups as the writer keeps them: UTC minute and hour starts.
            minute = stamp[:16] + ":00"
            hour = stamp[:13] + ":00:00"
            key = (minute, status)
            minute_counts[key] = minute_counts.get(key, 0) + 1
            dkey = (hour, domain, status)
            domain_counts[dkey] = domain_counts.get(dkey, 0) + 1
            ckey = (hour, client)
            client_counts[ckey] = client_counts.get(ckey, 0) + 1
            akey = (hour, qtype_names[q_idx[j]], upstream, time_bucket(took) if upstream else 0)
            answer_counts[akey] = answer_counts.get(akey, 0) + 1
        con.executemany(insert, batch)
        done += n
        print(f"\r  {done:,} / {rows:,} rows ({time.monotonic() - started:.0f} s)", end="", file=sys.stderr, flush=True)
    con.executemany(
        "INSERT INTO querylog_queryrollup (bucket, status, count) VALUES (?, ?, ?)",
        [(b, s, c) for (b, s), c in minute_counts.items()],
    )
    con.executemany(
        "INSERT INTO querylog_domainrollup (bucket, domain, status, count) VALUES (?, ?, ?, ?)",
        [(b, d, s, c) for (b, d, s), c in domain_counts.items()],
    )
    con.executemany(
        "INSERT INTO querylog_clientrollup (bucket, client, count) VALUES (?, ?, ?)",
        [(b, cl, c) for (b, cl), c in client_counts.items()],
    )
    con.executemany(
        "INSERT INTO querylog_answerrollup (bucket, qtype, upstream, time_bucket, count) VALUES (?, ?, ?, ?, ?)",
        [(b, q, u, t, c) for (b, q, u, t), c in answer_counts.items()],
    )
    con.execute("COMMIT")
    print(f"\n  loaded in {time.monotonic() - started:.0f} s; rebuilding {len(indexes)} indexes", file=sys.stderr)
    t0 = time.monotonic()
    for _, sql in indexes:
        con.execute(sql)
    con.execute("ANALYZE")
    con.close()
    print(f"  indexes and ANALYZE in {time.monotonic() - t0:.0f} s", file=sys.stderr)

    # Something to search for: a mid-popularity client and a suffix with a few subdomains.
    base_counts: dict[str, int] = {}
    for name in domains[:2000]:
        base = name.split(".", 1)[1] if name.count(".") > 1 else name
        base_counts[base] = base_counts.get(base, 0) + 1
    suffix = next((b for b, k in sorted(base_counts.items(), key=lambda kv: -kv[1]) if "." in b), "example.com")
    return {
        "client": clients[len(clients) // 4],
        "domain": domains[50],
        "suffix": suffix,
        "rollup_rows": [len(minute_counts), len(domain_counts), len(client_counts), len(answer_counts)],
    }


def _cumulative(weights: list[float]):
    total = 0.0
    for w in weights:
        total += w
        yield total


def measure(client, url: str, repeat: int, warmup: int = 2, before=None) -> tuple[float, float, int]:
    for _ in range(warmup):
        response = client.get(url)
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - t0) * 1000)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    p50 = statistics.median(times)
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else times[0]
    return p50, p95, len(response.content) if not response.streaming else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per page")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary database and print its path")
    parser.add_argument("--reuse", metavar="DIR", help="time again on a database kept by --keep (no load)")
    args = parser.parse_args(argv)

    tmp = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="gloryhole-bench-web-"))
    if args.reuse:
        args.keep = True
    db_path = tmp / "bench.sqlite3"
    os.environ["DEBUG"] = "0"
    sys.path.insert(0, str(BASE_DIR))
    try:
        setup_django(tmp, database=db_path, migrate=False)
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import setup_test_environment

        settings.STORAGES = {
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        from querylog.models import RollupSummary
        from querylog.selectors import dashboard_memo_clear

        print(f"temporary database: {db_path}", file=sys.stderr)
        call_command("migrate", verbosity=0)  # also brings a kept database up to the current schema
        if args.reuse:
            picks = json.loads((tmp / "picks.json").read_text())
        else:
            picks = load(db_path, args.rows, args.days, args.seed)
            (tmp / "picks.json").write_text(json.dumps(picks))
        setup_test_environment()
        user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
        client = Client()
        client.force_login(user)

        searches = [
            ("dashboard, 1 h", "/?window=1h"),
            ("dashboard, 24 h", "/?window=24h"),
            ("dashboard, 7 d", "/?window=7d"),
            ("history, no filter", "/queries/"),
            ("history, by client", f"/queries/?client={picks['client']}"),
            ("history, exact domain", f"/queries/?domain={picks['domain']}"),
            ("history, domain suffix", f"/queries/?domain=*.{picks['suffix']}"),
            # A suffix no row has: nothing stops the scan early, so this is the worst case.
            ("history, suffix, no match", "/queries/?domain=*.no-such-suffix.example"),
            ("history, suffix, no match 1h", "/queries/?domain=*.no-such-suffix.example&last=1h"),
            ("history, blocked only", "/queries/?status=blocked"),
            ("history, last hour", "/queries/?last=1h"),
            ("history, substring (24 h)", "/queries/?domain=*track*"),
            ("history, NXDOMAIN, 7 d", "/queries/?rcode=NXDOMAIN&last=7d"),
            ("history, 500 per page", "/queries/?limit=500"),
            ("api/stats, 24 h", "/api/stats?window=24h"),
        ]
        # Page 2 of the unfiltered history: keyset, so it should cost what page 1 costs.
        first = client.get("/queries/")
        cursor = first.context["page"].next_cursor
        searches.append(("history, page 2 (keyset)", f"/queries/?before={cursor}"))

        # A database kept (--keep) before the answer rollups existed has three counts and no answer rows.
        minute_rows, domain_rows, client_rows, *answers = picks["rollup_rows"]
        answer_rows = answers[0] if answers else 0
        print(
            f"\n{args.rows:,} QueryLog rows over {args.days} days; rollups: {minute_rows:,} minute, "
            f"{domain_rows:,} domain-hour, {client_rows:,} client-hour, {answer_rows:,} answer-hour rows; "
            f"{args.repeat} timed requests each\n"
        )
        print(f"| {'page':<30} | {'p50 ms':>8} | {'p95 ms':>8} |")
        print(f"|{'-' * 32}|{'-' * 10}|{'-' * 10}|")
        for label, url in searches:
            p50, p95, _ = measure(client, url, args.repeat)
            print(f"| {label:<30} | {p50:8.1f} | {p95:8.1f} |", flush=True)

        # The dashboard memoises closed hours and days per process: a fresh gunicorn
        # worker's first view of a window reads them once, from their stored
        # RollupSummary rows. Before any is stored (the first view after an upgrade,
        # or before the engine's retention thread built them), every closed hour and
        # day is grouped from the rollups.
        def forget_all() -> None:
            dashboard_memo_clear()
            RollupSummary.objects.all().delete()

        cold = [
            ("24h", "cold memo", dashboard_memo_clear),
            ("7d", "cold memo", dashboard_memo_clear),
            ("24h", "nothing stored", forget_all),
            ("7d", "nothing stored", forget_all),
        ]
        for window, label, before in cold:
            p50, p95, _ = measure(client, f"/?window={window}", max(3, args.repeat // 4), warmup=0, before=before)
            print(f"| {f'dashboard, {window}, {label}':<30} | {p50:8.1f} | {p95:8.1f} |", flush=True)
        print(f"\nsearch values: client {picks['client']}, domain {picks['domain']}, suffix *.{picks['suffix']}")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
