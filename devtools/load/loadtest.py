"""`make loadtest`: dnsperf against the engine and a dnslib baseline, all on loopback.

One run, in this order (every process it starts is stopped by PID at the end,
also on Ctrl-C or an error):

1. a lean fake upstream (`devtools.load.fast_upstream`) on a free loopback port;
2. a generated blocklist (100k names by default) and a dnsperf query file that
   mixes blocked names (some as subdomains, to exercise parent matching),
   repeated names (cache hits) and unique names (cache misses), A and AAAA;
3. for each variant a fresh server process: the baseline (`devtools.load.baseline_server`,
   dnslib's stock DNSServer) or `manage.py rundns` with its own copy of a migrated
   SQLite database holding the imported blocklist, query log off / pool / thread;
4. dnsperf at a fixed rate (`-Q`) and at full speed, `--duration` seconds each,
   while a sampler reads the server's thread count, RSS and CPU time from /proc;
5. after each engine run: the metrics endpoint (drops, written, GC pauses), a
   SIGTERM, the engine's own summary line, and the rows in `querylog_querylog`;
6. a markdown table, the machine and the exact command.

    .venv/bin/python -m devtools.load.loadtest --duration 15
    .venv/bin/python -m devtools.load.loadtest --duration 300 --variants pool-10k,thread-10k
    .venv/bin/python -m devtools.load.loadtest --variants pool-10k,pool-max,dot-10k,dot-max,doh-10k,doh-max
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devtools.load.encrypted import start_unbound
from devtools.load.harness import (
    FILE_MAX_LINES,
    FILE_QPS_ALLOWANCE,
    LOOPBACK,
    MIX_KINDS,
    REPEATED_POOL,
    REPO,
    SHARE_AAAA,
    DnsperfResult,
    Processes,
    ProcSample,
    Sampler,
    count_rows,
    cpu_busy_and_ours,
    dnsperf_argv,
    free_port,
    free_port_block,
    parse_dnsperf,
    pinned,
    scrape_metrics_sum,
    start_upstream,
    tail,
    wait_for_line,
    write_blocklist,
    write_queries,
)
from devtools.load.report import pick_medians, report

BLOCKLIST_NAME = "loadtest"
# A variant's GLORYHOLE_UPSTREAMS that names one of unbound's transports, filled in once it runs.
UNBOUND_UPSTREAM = "@unbound:"


@dataclass(frozen=True, slots=True)
class Variant:
    key: str  # what --variants selects
    server: str  # "baseline" | "floor" | "engine"
    rate: int | None  # dnsperf -Q; None = full speed
    env: dict[str, str] = field(default_factory=dict)
    mode: str = "udp"  # dnsperf -m: udp, dot or doh (the engine's own DoT / DoH listener)
    processes: int = 0  # rundns --processes; 0: the command line's --processes

    def label(self, rate: int) -> str:
        speed = f"{self.rate // 1000}k QPS" if self.rate else "full speed"
        what = {
            "baseline": "baseline (dnslib DNSServer)",
            "floor": "floor (plain recvfrom/sendto loop)",
            "nolog": "engine, query log off",
            "pool": "engine, log pool",
            "process": "engine, log pool written by a writer process",
            "private": "engine, log pool at privacy level 3",
            "thread": "engine, log thread-per-query",
            "cnameon": "engine, log pool, CNAME inspection on",
            "cnameoff": "engine, log pool, CNAME inspection off",
            "udpub": "engine, log pool, upstream unbound over UDP",
            "updot": "engine, log pool, upstream unbound over TLS",
            "updoh": "engine, log pool, upstream unbound over HTTPS",
            "dot": "engine, log pool, DoT clients",
            "doh": "engine, log pool, DoH clients (HTTP/2, GET)",
            "pool2p": "engine, log pool, 2 processes",
        }[self.key.split("-")[0]]
        return f"{what} @ {speed}"


def all_variants(rate: int) -> list[Variant]:
    off = {"GLORYHOLE_QUERY_LOG_ENABLED": "0"}
    pool = {"GLORYHOLE_QUERY_LOG_ENABLED": "1", "GLORYHOLE_QUERY_LOG_MODE": "pool"}
    thread = {"GLORYHOLE_QUERY_LOG_ENABLED": "1", "GLORYHOLE_QUERY_LOG_MODE": "thread"}
    tag = f"{rate // 1000}k" if rate % 1000 == 0 else str(rate)
    out = []
    for key, server, env in (
        ("baseline", "baseline", {}),
        ("nolog", "engine", off),
        ("pool", "engine", pool),
        ("thread", "engine", thread),
    ):
        out.append(Variant(f"{key}-{tag}", server, rate, env))
        out.append(Variant(f"{key}-max", server, None, env))
    return out


def extra_variants(rate: int) -> list[Variant]:
    """Selectable by name, not part of `all`: the floor of any Python server on this machine, privacy level 3, ...

    devtools.load.plain_server answers from a dict with one recvfrom and one sendto per query and
    does nothing else, so its latency at a rate is what the machine (kernel, scheduler,
    dnsperf) adds on its own, the bound for a Python engine's p99 in the same run.
    """
    tag = f"{rate // 1000}k" if rate % 1000 == 0 else str(rate)
    out = [Variant(f"floor-{tag}", "floor", rate), Variant("floor-max", "floor", None)]
    # Deep CNAME inspection on and off (with --upstream-cnames, so the upstream gives it targets).
    pool = {"GLORYHOLE_QUERY_LOG_ENABLED": "1", "GLORYHOLE_QUERY_LOG_MODE": "pool"}
    for key, on in (("cnameon", "1"), ("cnameoff", "0")):
        env = {**pool, "GLORYHOLE_CNAME_INSPECTION": on}
        out += [Variant(f"{key}-{tag}", "engine", rate, env), Variant(f"{key}-max", "engine", None, env)]
    # Privacy level 3 (docs/privacy.md): no rows, the DNS path only counts per minute;
    # its full speed is to be close to nolog-max's.
    private = {**pool, "GLORYHOLE_PRIVACY_LEVEL": "3"}
    out += [Variant(f"private-{tag}", "engine", rate, private), Variant("private-max", "engine", None, private)]
    # The pool's queue written by a child process (docs/querylog.md, "Writer process"), to set
    # beside pool-<rate> / pool-max; the server's CPU includes the child's.
    process = {**pool, "GLORYHOLE_QUERY_LOG_MODE": "process"}
    out += [Variant(f"process-{tag}", "engine", rate, process), Variant("process-max", "engine", None, process)]
    # Encrypted upstreams (docs/encrypted-dns.md): one unbound (devtools/load/encrypted.py) over
    # plain UDP, DoT and DoH, so the transport is the only difference; needs unbound and openssl.
    for key, transport in (("udpub", "udp"), ("updot", "tls"), ("updoh", "https")):
        env = {**pool, "GLORYHOLE_UPSTREAMS": UNBOUND_UPSTREAM + transport}
        out += [Variant(f"{key}-{tag}", "engine", rate, env), Variant(f"{key}-max", "engine", None, env)]
    # Encrypted clients (docs/encrypted-dns.md): dnsperf over DoT and DoH to the engine's own
    # listeners, to set beside pool-<rate> / pool-max (plain UDP, same log) in one run.
    for mode in ("dot", "doh"):
        out += [
            Variant(f"{mode}-{tag}", "engine", rate, pool, mode),
            Variant(f"{mode}-max", "engine", None, pool, mode),
        ]
    # One engine process per core (rundns --processes 2, docs/scale-out.md), to set beside pool-*.
    out += [Variant(f"pool2p-{tag}", "engine", rate, pool, processes=2),
            Variant("pool2p-max", "engine", None, pool, processes=2)]  # fmt: skip
    return out


# --- one run -------------------------------------------------------------------------


@dataclass(slots=True)
class RunResult:
    variant: Variant
    label: str
    perf: DnsperfResult | None = None
    proc: ProcSample | None = None
    metrics: dict[str, float] | None = None
    rows: int | None = None
    summary_line: str = ""
    stop_seconds: float = 0.0
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)
    log_warnings: list[str] = field(default_factory=list)
    qps_runs: list[float] = field(default_factory=list)  # every repeat's QPS, on the median run
    # Queries the engine says it answered: more than dnsperf's "completed" when replies came
    # after dnsperf's timeout (those count as lost for dnsperf, but are logged all the same).
    answered: int | None = None


@dataclass(slots=True)
class Setup:
    args: argparse.Namespace
    work: Path
    python: str
    upstream: str
    blocklist: Path
    queries: Path
    template_data: Path | None
    procs: Processes
    upstream_pid: int = 0
    unbound_upstreams: dict[str, str] = field(default_factory=dict)  # transport -> GLORYHOLE_UPSTREAMS


def run_dnsperf(setup: Setup, result: RunResult, server: subprocess.Popen, port: int, out_dir: Path) -> None:
    argv = dnsperf_argv(setup.args, setup.queries, port, result.variant.rate)
    mode = result.variant.mode
    if mode != "udp":
        # dnsperf does not check the certificate; DoH's -q also caps the HTTP/2 streams in flight.
        argv += ["-m", mode]
        if mode == "doh":
            argv += ["-O", f"doh-uri=https://{LOOPBACK}:{port}/dns-query"]
    out, err = out_dir / "dnsperf.out", out_dir / "dnsperf.err"
    before = cpu_busy_and_ours(setup.upstream_pid)
    with Sampler(server.pid) as sampler:
        # No preexec_fn here: the sampler thread is running (fork + preexec with threads can deadlock).
        perf = setup.procs.start("dnsperf", pinned(setup.args.pin_load, argv), stdout=out, stderr=err, guard=False)
        try:
            perf.wait(setup.args.duration + setup.args.timeout + 30)
        except subprocess.TimeoutExpired:
            result.problems.append("dnsperf did not finish in time and was stopped")
        finally:
            # The load first, then (in the caller) the server: a server under load stops slower.
            setup.procs.stop(perf)
    after = cpu_busy_and_ours(setup.upstream_pid)
    result.proc = sampler.sample
    if before and after:
        # The machine is shared: whatever else ran during the window took CPU from the server or dnsperf.
        busy, ours = after[0] - before[0], after[1] - before[1]
        result.proc.other_cpu_seconds = max(0.0, busy - ours - result.proc.cpu_seconds)
    result.perf = parse_dnsperf(out)
    if not result.perf.ok:
        result.problems.append(f"dnsperf produced no statistics: {tail(err, 5) or tail(out, 5)}")
    if server.poll() is not None:
        result.problems.append(f"the server exited during the run (code {server.returncode})")


def run_baseline(setup: Setup, variant: Variant) -> RunResult:
    """The dnslib baseline, or the floor (devtools.load.plain_server): a server that is not the engine."""
    result = RunResult(variant, variant.label(setup.args.rate))
    out_dir = Path(tempfile.mkdtemp(prefix=f"{variant.key}-", dir=setup.work))
    if variant.server == "floor":
        argv = [setup.python, "-m", "devtools.load.plain_server", "--host", LOOPBACK, "--port", "0"]
        ready_line = re.compile(r"plain server on [\d.]+:(\d+)")
    else:
        argv = [setup.python, "-m", "devtools.load.baseline_server", "--host", LOOPBACK, "--port", "0"]
        argv += ["--upstream", setup.upstream, "--blocklist", str(setup.blocklist)]
        ready_line = re.compile(r"listening on [\d.]+:(\d+)")
    stdout, stderr = out_dir / "server.out", out_dir / "server.err"
    server = setup.procs.start(variant.server, pinned(setup.args.pin_server, argv), stdout=stdout, stderr=stderr)
    try:
        ready = wait_for_line(server, stdout, ready_line, timeout=60)
        if not ready:
            result.problems.append(f"{variant.server} did not start: {tail(stderr)}")
            return result
        run_dnsperf(setup, result, server, int(ready.group(1)), out_dir)
    finally:
        result.exit_code, result.stop_seconds = setup.procs.stop(server)
    return result


def base_env(data_dir: Path, upstream: str) -> dict[str, str]:
    """The environment of every manage.py the load test runs: a temp database, loopback only."""
    env = dict(os.environ)
    # Never a real database: no URL, only the temp data dir.
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "GLORYHOLE_DATA_DIR": str(data_dir),
            "GLORYHOLE_UPSTREAMS": upstream,
            # The engine would otherwise fetch URL subscriptions (a fresh database subscribes to
            # StevenBlack): the load test sends nothing beyond loopback.
            "GLORYHOLE_BLOCKLIST_UPDATE_HOURS": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def engine_env(setup: Setup, data_dir: Path, metrics_port: int, extra: dict[str, str]) -> dict[str, str]:
    env = base_env(data_dir, setup.upstream)
    env["GLORYHOLE_METRICS_PORT"] = str(metrics_port)
    env.update(extra)
    named = env["GLORYHOLE_UPSTREAMS"]
    if named.startswith(UNBOUND_UPSTREAM):
        env["GLORYHOLE_UPSTREAMS"] = setup.unbound_upstreams[named.removeprefix(UNBOUND_UPSTREAM)]
    return env


def engine_processes(setup: Setup, variant: Variant) -> int:
    return variant.processes or setup.args.processes


def engine_argv(setup: Setup, variant: Variant, port: int) -> list[str]:
    """`manage.py rundns` for a variant, on the --pin-server CPUs (its workers inherit the mask)."""
    argv = [setup.python, "manage.py", "rundns", "--host", LOOPBACK, "--port", str(port)]
    processes = engine_processes(setup, variant)
    if processes > 1:
        argv += ["--processes", str(processes)]
    return pinned(setup.args.pin_server, argv)


def run_engine(setup: Setup, variant: Variant) -> RunResult:
    result = RunResult(variant, variant.label(setup.args.rate))
    if not variant.processes and setup.args.processes > 1:
        result.label += f", {setup.args.processes} processes"
    assert setup.template_data is not None
    out_dir = Path(tempfile.mkdtemp(prefix=f"{variant.key}-", dir=setup.work))
    data_dir = out_dir / "data"
    # A fresh copy of the migrated database per run: rows are counted per variant.
    shutil.copytree(setup.template_data, data_dir)
    processes = engine_processes(setup, variant)
    # Worker K of rundns --processes N serves its metrics on the base port + K.
    port, metrics_port = free_port(), free_port_block(processes)
    env = engine_env(setup, data_dir, metrics_port, variant.env)
    load_port = port
    if variant.mode != "udp":
        cert, key = loadtest_certificate(setup.work)
        load_port = free_port()
        env.update({"GLORYHOLE_TLS_CERT": str(cert), "GLORYHOLE_TLS_KEY": str(key),
                    "GLORYHOLE_DOT_PORT": str(load_port if variant.mode == "dot" else 0),
                    "GLORYHOLE_DOH_PORT": str(load_port if variant.mode == "doh" else 0)})  # fmt: skip
    stdout, stderr = out_dir / "server.out", out_dir / "server.err"
    server = setup.procs.start("rundns", engine_argv(setup, variant, port), stdout=stdout, stderr=stderr, env=env)
    try:
        if not wait_for_line(server, stdout, re.compile(r"listening on"), timeout=setup.args.startup_timeout):
            result.problems.append(f"rundns did not print 'listening on': {tail(stderr) or tail(stdout)}")
            return result
        run_dnsperf(setup, result, server, load_port, out_dir)
        result.metrics = scrape_metrics_sum([metrics_port + k for k in range(processes)])
    finally:
        # rundns drains its query log on SIGTERM: give it time before a SIGKILL.
        result.exit_code, result.stop_seconds = setup.procs.stop(server, timeout=setup.args.stop_timeout)
    if result.stop_seconds >= setup.args.stop_timeout:
        result.problems.append(f"rundns did not stop within {setup.args.stop_timeout:.0f}s of SIGTERM (killed)")
    elif result.exit_code not in (0, None):
        result.problems.append(f"rundns exited with code {result.exit_code}")
    lines = stdout.read_text(errors="replace").splitlines()
    result.summary_line = lines[-1].strip() if len(lines) > 1 else ""
    said = re.search(r"stopped after (\d+) queries", result.summary_line)
    result.answered = int(said.group(1)) if said else None
    result.rows = count_rows(data_dir / "gloryhole.sqlite3")
    result.log_warnings = [ln for ln in stderr.read_text(errors="replace").splitlines() if _is_warning(ln)]
    return result


def loadtest_certificate(work: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 in the work dir, made once with the openssl CLI."""
    cert, key = work / "loadtest-cert.pem", work / "loadtest-key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=loadtest",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return cert, key


def _is_warning(line: str) -> bool:
    return any(level in line for level in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback"))


# --- setup ---------------------------------------------------------------------------


def manage(setup_python: str, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [setup_python, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# Only the generated list is enabled, so the engine blocks exactly what the baseline blocks;
# URL subscriptions a fresh database starts with stay disabled (and are never fetched).
_ONLY_OUR_LIST = """
from dnsengine.models import Blocklist
from dnsengine.services import config_generation_bump
Blocklist.objects.exclude(name={name!r}).update(enabled=False)
config_generation_bump()
for name, count in Blocklist.objects.filter(enabled=True).values_list("name", "domain_count"):
    print(f"enabled list {{name}}: {{count}} names")
"""

# --forwarding-rules N: rules on the load's own upstream (so a name under one takes the
# same path), half ending in the names' top-level label `example`, none covering them:
# every forwarded miss pays the whole suffix walk (docs/forwarding.md).
_FORWARDING_RULES = """
from dnsengine.models import ForwardingRule
from devtools.bench.forwarding import rule_suffixes
for suffix in rule_suffixes({count}):
    ForwardingRule.objects.create(domain=suffix, upstreams={upstream!r})
print(ForwardingRule.objects.count(), "forwarding rules")
"""


def prepare_engine_db(python: str, work: Path, blocklist: Path, upstream: str,
                      forwarding_rules: int = 0) -> tuple[Path, str]:  # fmt: skip
    """Migrate a template data dir and import the blocklist into it; returns (dir, how it was imported)."""
    data = work / "template-data"
    data.mkdir()
    env = base_env(data, upstream)
    done = manage(python, ["migrate", "--noinput"], env, timeout=300)
    if done.returncode:
        raise RuntimeError(f"migrate failed:\n{done.stderr[-2000:]}")
    started = time.monotonic()
    done = manage(python, ["importblocklist", BLOCKLIST_NAME, str(blocklist)], env, timeout=600)
    how = "manage.py importblocklist"
    if done.returncode:
        raise RuntimeError(f"blocklist import failed ({how}):\n{done.stderr[-2000:]}")
    took = time.monotonic() - started
    done = manage(python, ["shell", "-c", _ONLY_OUR_LIST.format(name=BLOCKLIST_NAME)], env, timeout=120)
    if done.returncode:
        raise RuntimeError(f"could not disable the other blocklists:\n{done.stderr[-2000:]}")
    enabled = "; ".join(line for line in done.stdout.splitlines() if line.startswith("enabled list"))
    if forwarding_rules:
        code = _FORWARDING_RULES.format(count=forwarding_rules, upstream=upstream)
        done = manage(python, ["shell", "-c", code], env, timeout=120)
        if done.returncode:
            raise RuntimeError(f"could not add the forwarding rules:\n{done.stderr[-2000:]}")
        enabled += f"; {forwarding_rules} forwarding rules covering none of the names"
    with contextlib.closing(sqlite3.connect(data / "gloryhole.sqlite3")) as conn:
        # Fold the WAL into the main file so that copying the directory copies everything.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return data, f"{how} in {took:.1f}s ({enabled}; every other list disabled)"


# --- main ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds of dnsperf per variant (default 15)")
    parser.add_argument("--rate", type=int, default=10_000, help="dnsperf -Q for the fixed-rate runs")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q at full speed")
    parser.add_argument("--outstanding-fixed", type=int, default=1000, help="dnsperf -q at the fixed rate")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c (source sockets)")
    parser.add_argument("--timeout", type=int, default=2, help="dnsperf -t: a reply later than this is lost")
    parser.add_argument("--blocklist-size", type=int, default=100_000)
    parser.add_argument("--variants", default="all", help="comma-separated keys (default all): " + ", ".join(
        v.key for v in all_variants(10_000)).replace("10k", "<rate>")
        + "; also selectable by name: floor-<rate>, floor-max (devtools.load.plain_server), "
        "cnameon-<rate>, cnameon-max, cnameoff-<rate>, cnameoff-max (GLORYHOLE_CNAME_INSPECTION=1/0), "
        "udpub-, updot-, updoh-<rate> and -max (upstream unbound over UDP, TLS, HTTPS), "
        "pool2p-<rate>, pool2p-max (pool, rundns --processes 2)")  # fmt: skip
    parser.add_argument("--only", choices=MIX_KINDS, default="", help="query only one kind of name (default: the mix)")
    parser.add_argument("--upstream-cnames", type=int, default=0, metavar="K",
                        help="the fake upstream answers one name in K through a CNAME (default 0: none)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; the table shows the median run")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--stop-timeout", type=float, default=60.0, help="seconds rundns gets to drain after SIGTERM")
    parser.add_argument(
        "--pin-server",
        default="",
        metavar="CPUS",
        help="run the server on these CPUs only (taskset -c list, e.g. 1); default: anywhere",
    )
    parser.add_argument(
        "--pin-load",
        default="",
        metavar="CPUS",
        help="run dnsperf and the fake upstream on these CPUs only (e.g. 0); default: anywhere",
    )
    parser.add_argument("--forwarding-rules", type=int, default=0, metavar="N",
                        help="add N conditional-forwarding rules that cover none of the names (default 0)")  # fmt: skip
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="rundns --processes N for the engine variants that do not set it (default 1)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, dnsperf output, databases)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 3600:
        parser.error("--duration must be 1..3600 seconds")
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be 1..20")
    if args.rate < 1:
        parser.error("--rate must be positive")
    if not 0 <= args.forwarding_rules <= 1000:
        parser.error("--forwarding-rules must be 0..1000")
    if args.upstream_cnames < 0:
        parser.error("--upstream-cnames must be 0 or more")
    if not 1 <= args.processes <= 64:
        parser.error("--processes must be 1..64")
    return args


def select_variants(args: argparse.Namespace) -> list[Variant]:
    variants = all_variants(args.rate)
    if args.variants == "all":
        return variants
    variants += extra_variants(args.rate)
    wanted = [k.strip() for k in args.variants.split(",") if k.strip()]
    known = {v.key for v in variants}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [v for v in variants if v.key in wanted]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT unwind like Ctrl-C, so the finally blocks stop the servers."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: Python leaves it ignored when started in the background by a shell without
    # job control, and a load test must still stop cleanly on kill -INT.
    previous = {signum: signal.signal(signum, _raise) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("dnsperf") is None:
        print(
            "dnsperf is not installed and could not be installed. On Debian/Ubuntu: "
            "sudo apt-get install dnsperf (the Makefile's loadtest target tries this itself).",
            file=sys.stderr,
        )
        return 2
    variants = select_variants(args)
    notes: list[str] = []
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="gloryhole-loadtest-"))
    results: list[RunResult] = []
    started = time.monotonic()
    try:
        with sigterm_as_interrupt():
            python = sys.executable
            blocklist, queries = work / "blocklist.txt", work / "queries.txt"
            write_blocklist(blocklist, args.blocklist_size)
            lines = min(FILE_MAX_LINES, max(200_000, FILE_QPS_ALLOWANCE * args.duration, args.rate * args.duration))
            mix = write_queries(queries, lines, args.blocklist_size, args.only)
            notes.append(
                f"query file: {lines:,} lines, {mix['blocked']:,} blocked (half as subdomains of a listed name), "
                f"{mix['repeated']:,} from a pool of {REPEATED_POOL} names (cache hits), {mix['unique']:,} unique "
                f"(cache misses), {SHARE_AAAA:.0%} AAAA; blocklist of {args.blocklist_size:,} names"
            )
            upstream_proc, upstream = start_upstream(python, work, procs, args.pin_load, args.upstream_cnames)
            template = None
            if any(v.server == "engine" for v in variants):
                template, how = prepare_engine_db(python, work, blocklist, upstream, args.forwarding_rules)
                notes.append(f"blocklist import via {how}")
            setup = Setup(args, work, python, upstream, blocklist, queries, template, procs, upstream_proc.pid)
            unbound_proc = None
            if any(v.env.get("GLORYHOLE_UPSTREAMS", "").startswith(UNBOUND_UPSTREAM) for v in variants):
                unbound_proc, setup.unbound_upstreams = start_unbound(work, procs)
                notes.append("encrypted variants: unbound " + ", ".join(setup.unbound_upstreams.values()))
            # Repeats go round-robin so that a burst of load from elsewhere hits every variant alike.
            for round_no in range(1, args.repeat + 1):
                for variant in variants:
                    print(f"[loadtest] {variant.label(args.rate)} for {args.duration}s (run {round_no}/{args.repeat})"
                          " ...", file=sys.stderr, flush=True)  # fmt: skip
                    run = run_engine if variant.server == "engine" else run_baseline
                    result = run(setup, variant)
                    results.append(result)
                    if result.perf and result.perf.ok and result.perf.sent > lines:
                        notes.append(f"{result.label}: dnsperf wrapped around the query file ({result.perf.sent:,})")
            procs.stop(upstream_proc)
            if unbound_proc is not None:
                procs.stop(unbound_proc)
            notes.append(f"fake upstream: {tail(work / 'upstream.out', 1)}")
            notes.append(f"whole run took {time.monotonic() - started:.0f}s")
            print(report(setup, pick_medians(results), notes))
    except KeyboardInterrupt:
        print("[loadtest] interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"[loadtest] work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in results if not (r.perf and r.perf.ok)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
