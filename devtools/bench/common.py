"""What the benchmarks share: starting Django on a throw-away database, synthetic
query-log entries and rows, medians, and threads that compete for the GIL.

Django is imported inside the functions, so a benchmark that never starts it
(``devtools.bench.blocklist``'s matcher designs) does not pay for it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import statistics
import threading
import time
from pathlib import Path

WRITE_BATCH = 2000  # GLORYHOLE_QUERY_LOG_BATCH's default


def setup_django(
    data_dir: Path | None = None,
    *,
    database: Path | str | None = None,
    migrate: bool = True,
    quiet_querylog: bool = False,
) -> None:
    """Start Django with its data directory and database outside data/, then migrate.

    ``database`` is a SQLite file or a database URL; without it a SQLite file
    ``bench.sqlite3`` in ``data_dir`` is used. Without ``data_dir`` Django starts with
    the settings' own data directory and database (for benchmarks that never touch
    the database). ``quiet_querylog`` hides the query log's fill-level warnings, which
    runs that queue everything before writing trigger on purpose.
    """
    if data_dir is not None:
        os.environ["GLORYHOLE_DATA_DIR"] = str(data_dir)
        if database is None:
            database = data_dir / "bench.sqlite3"
    if database is not None:
        url = str(database)
        os.environ["DATABASE_URL"] = url if "://" in url else f"sqlite:///{url}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "gloryhole_site.settings"
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    if quiet_querylog:
        logging.getLogger("querylog").setLevel(logging.ERROR)


def migrated_sqlite_template(tmp: Path) -> Path:
    """A migrated SQLite file ``tmp/template.sqlite3``, its connections closed so it can be copied."""
    path = tmp / "template.sqlite3"
    setup_django(tmp, database=path)
    from django.db import connections

    connections.close_all()
    return path


def home_entries(n: int, seed: int = 7):
    """QueryLogEntry objects like a home network's traffic: 30 clients, 5,000 domains
    with a Zipf-like popularity, statuses weighted as a busy resolver sees them,
    timestamps 10,000 per second."""
    from dnsengine.core.entry import QueryLogEntry

    rng = random.Random(seed)
    domains = [f"d{i}.example.com" for i in range(5000)]
    weights = [1 / (i + 1) for i in range(len(domains))]
    picked = rng.choices(domains, weights=weights, k=n)
    statuses = rng.choices(["forwarded", "cached", "blocked", "local", "error"], weights=[50, 25, 20, 3, 2], k=n)
    start = time.time()
    return [
        QueryLogEntry(
            timestamp=start + i / 10000,
            client=f"192.168.1.{rng.randrange(2, 32)}",
            protocol="udp",
            domain=picked[i],
            qtype="A",
            rcode="NXDOMAIN" if statuses[i] == "blocked" else "NOERROR",
            status=statuses[i],
            rule="list:StevenBlack" if statuses[i] == "blocked" else "",
            upstream="1.1.1.1:53" if statuses[i] == "forwarded" else "",
            duration_us=rng.randrange(30, 30000),
        )
        for i in range(n)
    ]


def miss_entries(n: int, seed: int = 11):
    """QueryLogEntry objects as `make loadtest` sends them: 30 % blocked, most names new,
    so rows land all over the domain index."""
    from dnsengine.core.entry import QueryLogEntry

    rng = random.Random(seed)
    start = time.time()
    out = []
    for i in range(n):
        blocked = rng.random() < 0.3
        out.append(
            QueryLogEntry(
                timestamp=start + i / 10000,
                client=f"192.168.1.{rng.randrange(2, 40)}",
                protocol="udp",
                domain=f"u{rng.randrange(10**7)}.miss{rng.randrange(101)}.example",
                qtype="A",
                rcode="NXDOMAIN" if blocked else "NOERROR",
                status="blocked" if blocked else "forwarded",
                rule="list:loadtest" if blocked else "",
                upstream="" if blocked else "127.0.0.1:5300",
                duration_us=rng.randrange(30, 30000),
            )
        )
    return out


QUERYLOG_COLUMNS = "timestamp, client, protocol, domain, qtype, rcode, status, rule, upstream, duration_us, engine"


def querylog_rows(n: int, seed: int = 3) -> list[tuple]:
    """Raw querylog_querylog rows in QUERYLOG_COLUMNS order, 10,000 a second from a fixed
    date in time order; names drawn from 200,000, so most rows bring a new name."""
    rnd = random.Random(seed)
    statuses = ("cached", "forwarded", "blocked")
    out = []
    for i in range(n):
        second = 1_790_000_000 + i // 10_000
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second)) + f".{(i % 10_000) * 100:06d}"
        name = f"u{rnd.randrange(200_000)}.miss{rnd.randrange(101)}.example"
        client = f"10.0.{rnd.randrange(4)}.{rnd.randrange(50)}"
        out.append((ts, client, "udp", name, "A", "NOERROR", rnd.choice(statuses), "", "", rnd.randrange(2000), "e1"))
    return out


def median(values: list[float]) -> tuple[float, float, float]:
    """The median, minimum and maximum of ``values``."""
    return statistics.median(values), min(values), max(values)


class BusyListeners:
    """Threads that load the GIL roughly as DNS listener threads do: a datagram each
    way over a local socketpair (the GIL is released around each), then a few hundred
    additions of Python per "query". A synthetic stand-in, not the engine: it shows how
    a write path behaves when other threads want the GIL.
    """

    def __init__(self, threads: int = 2) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        x = 0
        with a, b:
            while not self._stop.is_set():
                a.send(b"q" * 40)
                b.recv(512)
                for i in range(300):
                    x += i

    def __enter__(self) -> BusyListeners:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


class CountingSink:
    """A query-log sink that only counts (the in-process benches: no queue, no writer)."""

    def __init__(self) -> None:
        self.n = 0

    def log_async(self, entry) -> bool:
        self.n += 1
        return True


class NullTransport:
    """A UDP transport that sends nowhere: Resolver.handle's cost without sockets."""

    proto = "udp"

    def send(self, reply: bytes, addr) -> None:
        pass


class DiscardForwarder:
    """Takes every query and never answers: the decision's cost up to the upstream, no sockets."""

    def forward(self, *args) -> bool:
        return True
