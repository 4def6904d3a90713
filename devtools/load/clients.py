"""`make loadtest-clients`: the cost of client groups, side by side with one group, on loopback.

The same engine, blocklist and query mix as `make loadtest`, in two configurations:

- `one-group`: every client in the default group (the engine's single-matcher path);
- `groups`: `--clients` Client rows (127.0.0.2, 127.0.0.3, ...) spread round-robin over
  `--groups` groups, each with a policy of its own (an allow entry no query asks for) but
  the same work: the list and blocking for all. So the difference is what groups cost per
  query (finding the client's group, each group's decision on shared answers, its own
  blocked answers), not a different answer mix.

dnsperf sends from one address per process, so the load comes from `--sources`
dnsperf processes bound to the first of those client addresses (each at full speed,
`--outstanding` each, each with a query file of its own); the other clients are in the
engine's tables all the same.
Both configurations get the same sources. The query log is off, so the figure is the
DNS path's own cost. Runs go round-robin `--repeat` times; the table shows the median
of the summed QPS, its range, and the ratio to `one-group`.

    .venv/bin/python -m devtools.load.clients --duration 10 --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.load.harness import (
    FILE_MAX_LINES,
    FILE_QPS_ALLOWANCE,
    LOOPBACK,
    Processes,
    free_port,
    parse_dnsperf,
    pinned,
    start_upstream,
    tail,
    wait_for_line,
    write_blocklist,
    write_queries,
)
from devtools.load.loadtest import base_env, engine_env, manage, prepare_engine_db

_GROUPS_SETUP = """
from dnsengine.models import AllowedDomain, Blocklist, Client, ClientGroup
from dnsengine.services import config_generation_bump
groups = [ClientGroup.objects.get(is_default=True)]
groups += [ClientGroup.objects.create(name=f"group-{{i}}") for i in range(1, {groups})]
# The same work for every group (the list, blocking on), but a policy of its own each: an
# allow entry no query of the mix asks for. The engine then runs the groups' path: the
# client's group looked up, its decision checked on shared answers, one decision array per group.
for i, group in enumerate(groups):
    allow = AllowedDomain.objects.create(domain=f"group-{{i}}.nowhere.example")
    allow.groups.add(group)
for n in range({clients}):
    group = groups[0] if n < {sources_in_one} else groups[n % len(groups)]
    Client.objects.create(name=f"client-{{n}}", ip=f"127.0.{{(n + 2) // 256}}.{{(n + 2) % 256}}", group=group)
config_generation_bump()
print(f"{{Client.objects.count()}} clients in {{ClientGroup.objects.count()}} groups, "
      f"{{Blocklist.objects.filter(enabled=True).count()}} list(s) for all of them")
"""


@dataclass(slots=True)
class Run:
    variant: str
    qps: float = 0.0
    p99_ms: float = 0.0  # the worst p99 among the sources
    lost: int = 0
    problems: list[str] = field(default_factory=list)


def source_address(n: int) -> str:
    """The n-th client address (0 -> 127.0.0.2), as the Client rows have them."""
    return f"127.0.{(n + 2) // 256}.{(n + 2) % 256}"


def run_variant(args, work: Path, python: str, upstream: str, queries: list[Path], template: Path, variant: str,
                procs: Processes) -> Run:  # fmt: skip
    result = Run(variant)
    out_dir = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=work))
    data = out_dir / "data"
    shutil.copytree(template, data)
    port = free_port()
    env = engine_env(_Setup(upstream), data, free_port(), {"GLORYHOLE_QUERY_LOG_ENABLED": "0"})
    argv = [python, "manage.py", "rundns", "--host", LOOPBACK, "--port", str(port)]
    stdout, stderr = out_dir / "server.out", out_dir / "server.err"
    server = procs.start("rundns", pinned(args.pin_server, argv), stdout=stdout, stderr=stderr, env=env)
    try:
        if not wait_for_line(server, stdout, _LISTENING, timeout=120):
            result.problems.append(f"rundns did not start: {tail(stderr) or tail(stdout)}")
            return result
        perfs = []
        for i in range(args.sources):
            argv = ["dnsperf", "-s", LOOPBACK, "-p", str(port), "-a", source_address(i), "-d", str(queries[i])]
            argv += ["-l", str(args.duration), "-c", "1", "-t", "2", "-q", str(args.outstanding), "-v"]
            out = out_dir / f"dnsperf-{i}.out"
            perfs.append((procs.start(f"dnsperf-{i}", pinned(args.pin_load, argv), stdout=out,
                                      stderr=out_dir / f"dnsperf-{i}.err", guard=False), out))  # fmt: skip
        for proc, _ in perfs:
            try:
                proc.wait(args.duration + 40)
            except subprocess.TimeoutExpired:
                result.problems.append("a dnsperf did not finish in time and was stopped")
            procs.stop(proc)
        for _, out in perfs:
            perf = parse_dnsperf(out)
            if not perf.ok:
                result.problems.append(f"a dnsperf produced no statistics: {tail(out, 3)}")
                continue
            result.qps += perf.qps
            result.lost += perf.lost
            result.p99_ms = max(result.p99_ms, perf.percentiles_s.get(99, 0.0) * 1000)
    finally:
        procs.stop(server, timeout=60)
    return result


@dataclass(slots=True)
class _Setup:
    """What engine_env reads of loadtest's Setup."""

    upstream: str


_LISTENING = __import__("re").compile(r"listening on")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of dnsperf per run (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (default 3)")
    parser.add_argument("--clients", type=int, default=200, help="Client rows (default 200)")
    parser.add_argument("--groups", type=int, default=5, help="groups, the default one included (default 5)")
    parser.add_argument("--sources", type=int, default=10, help="dnsperf processes, one address each (default 10)")
    parser.add_argument("--outstanding", type=int, default=20, help="dnsperf -q of each process (default 20)")
    parser.add_argument("--blocklist-size", type=int, default=100_000)
    parser.add_argument(
        "--sources-in-one-group",
        action="store_true",
        help="put the clients that send (the first --sources) in one group: the group lookup's cost without "
        "the caches split between groups",
    )
    parser.add_argument("--pin-server", default="", metavar="CPUS", help="taskset -c list for the engine")
    parser.add_argument("--pin-load", default="", metavar="CPUS", help="taskset -c list for dnsperf and the upstream")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600 or not 1 <= args.repeat <= 20:
        parser.error("--duration must be 1..600 and --repeat 1..20")
    if not 2 <= args.groups <= 50 or not 1 <= args.sources <= min(args.clients, 50) or args.clients > 60000:
        parser.error("--groups 2..50, --sources 1..min(--clients, 50), --clients up to 60000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("dnsperf") is None:
        print("dnsperf is not installed (apt-get install dnsperf)", file=sys.stderr)
        return 2
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="gloryhole-loadtest-clients-"))
    runs: list[Run] = []
    started = time.monotonic()
    try:
        python = sys.executable
        blocklist = work / "blocklist.txt"
        write_blocklist(blocklist, args.blocklist_size)
        # One file per source, as different devices ask different things: the same mix, its own
        # draw, and unique names of its own. One shared file would let every source after the
        # first be answered from what the first one asked, which only clients of one group share.
        lines = min(FILE_MAX_LINES, max(200_000, FILE_QPS_ALLOWANCE * args.duration) // args.sources)
        queries = [work / f"queries-{i}.txt" for i in range(args.sources)]
        for i, path in enumerate(queries):
            write_queries(path, lines, args.blocklist_size, seed=42 + i, unique_prefix=f"s{i}u")
        upstream_proc, upstream = start_upstream(python, work, procs, args.pin_load)
        one_group, _ = prepare_engine_db(python, work, blocklist, upstream)
        groups = work / "groups-data"
        shutil.copytree(one_group, groups)
        setup = _GROUPS_SETUP.format(
            groups=args.groups, clients=args.clients, sources_in_one=args.sources if args.sources_in_one_group else 0
        )
        done = manage(python, ["shell", "-c", setup],
                      base_env(groups, upstream), timeout=300)  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"could not create the groups:\n{done.stderr[-2000:]}")
        setup_line = done.stdout.strip().splitlines()[-1]
        for round_no in range(1, args.repeat + 1):
            for variant, template in (("one-group", one_group), ("groups", groups)):
                print(f"[loadtest-clients] {variant}, run {round_no}/{args.repeat} ...", file=sys.stderr, flush=True)
                runs.append(run_variant(args, work, python, upstream, queries, template, variant, procs))
        procs.stop(upstream_proc)
        print(report(args, runs, setup_line, time.monotonic() - started))
    except KeyboardInterrupt:
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r.problems for r in runs) else 0


def report(args, runs: list[Run], setup_line: str, took: float) -> str:
    lines = [
        f"Client groups, {args.sources} dnsperf sources at full speed (-q {args.outstanding} each), "
        f"{args.duration}s per run, {args.repeat} runs each, query log off; `groups`: {setup_line}"
        + (", the sending clients all in one group." if args.sources_in_one_group else "."),
        "",
        "| configuration | QPS, median (range) | ratio to one-group | worst p99 ms (median run) | lost |",
        "| --- | --- | --- | --- | --- |",
    ]
    medians = {}
    for variant in ("one-group", "groups"):
        mine = sorted((r for r in runs if r.variant == variant and not r.problems), key=lambda r: r.qps)
        if not mine:
            lines.append(f"| {variant} | failed | | | |")
            continue
        middle = mine[len(mine) // 2]
        medians[variant] = statistics.median(r.qps for r in mine)
        ratio = medians[variant] / medians["one-group"] if "one-group" in medians else float("nan")
        lines.append(
            f"| {variant} | {medians[variant]:,.0f} ({mine[0].qps:,.0f}..{mine[-1].qps:,.0f}) | {ratio:.2f} "
            f"| {middle.p99_ms:.1f} | {middle.lost} |"
        )
    for r in runs:
        for problem in r.problems:
            lines.append(f"- {r.variant}: {problem}")
    lines.append(f"\nwhole run took {took:.0f}s; command: python -m devtools.load.clients {' '.join(sys.argv[1:])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
