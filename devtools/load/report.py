"""The load test's report: one markdown table row per variant (the median run), the
ratios between variants, the issues' targets checked on what was measured, the
machine and the exact command.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from devtools.load.harness import REPO, dnsperf_argv, gc_pause_seconds

if TYPE_CHECKING:
    from devtools.load.loadtest import RunResult, Setup


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.2f}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def answered(r: RunResult) -> int | None:
    """The engine's own count of answered queries, else dnsperf's completed ones."""
    if r.answered is not None:
        return r.answered
    return r.perf.completed if r.perf else None


def pick_medians(results: list[RunResult]) -> list[RunResult]:
    """One row per variant: the run with the median QPS (a real run, so its figures belong together)."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.variant.key, []).append(r)
    picked = []
    for runs in groups.values():
        ok = sorted((r for r in runs if r.perf and r.perf.ok), key=lambda r: r.perf.qps if r.perf else 0.0)
        chosen = ok[(len(ok) - 1) // 2] if ok else runs[0]
        chosen.qps_runs = [r.perf.qps for r in ok if r.perf]
        for r in runs:
            if r is not chosen:
                chosen.problems += [f"(another run) {p}" for p in r.problems]
        picked.append(chosen)
    return picked


def _qps_cell(r: RunResult) -> str:
    assert r.perf is not None
    if len(r.qps_runs) > 1:
        return f"{r.perf.qps:,.0f} ({min(r.qps_runs):,.0f}..{max(r.qps_runs):,.0f})"
    return f"{r.perf.qps:,.0f}"


def accounted(r: RunResult) -> int | None:
    """Rows written plus entries the privacy settings kept out (level 3: all of them)."""
    if r.rows is None:
        return None
    m = r.metrics or {}
    # The total over the reasons (parse_metrics also keeps each labelled sample: not those).
    return r.rows + int(m.get("dns_query_log_not_logged_total", 0))


def render_table(results: list[RunResult]) -> str:
    head = (
        "| variant | QPS | avg ms | p50 ms | p95 ms | p99 ms | max ms | lost | drops | rows (+ not logged) / answered "
        "| threads start→peak | RSS start→peak MB | server CPU % | others' CPU % | GC pause s |"
    )
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in results:
        p, s, m = r.perf, r.proc, r.metrics or {}
        if p is None or not p.ok:
            lines.append(f"| {r.label} | failed: {'; '.join(r.problems)[:200]} |" + " |" * 13)
            continue
        logging_on = r.variant.env.get("GLORYHOLE_QUERY_LOG_ENABLED") == "1"
        drops = m.get("dns_query_log_drops_total") if logging_on else None
        rows = f"{_num(accounted(r))} / {_num(answered(r))}" if logging_on else "—"
        cpu = f"{100 * s.cpu_seconds / p.run_time_s:.0f}" if s and p.run_time_s else "—"
        other = s.other_cpu_seconds if s else None
        others = f"{100 * other / p.run_time_s:.0f}" if other is not None and p.run_time_s else "—"
        gc = gc_pause_seconds(m)
        lines.append(
            f"| {r.label} | {_qps_cell(r)} | {_ms(p.avg_s)} | {_ms(p.percentiles_s.get(50))} "
            f"| {_ms(p.percentiles_s.get(95))} | {_ms(p.percentiles_s.get(99))} | {_ms(p.max_s)} | {_num(p.lost)} "
            f"| {_num(drops)} | {rows} | {s.threads_start}→{s.threads_peak} "
            f"| {s.rss_start_kb / 1024:.0f}→{s.rss_peak_kb / 1024:.0f} "
            f"| {cpu} | {others} | {'—' if gc is None else f'{gc:.3f}'} |"
        )
    return "\n".join(lines)


def machine() -> str:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB RAM, "
    done = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True, timeout=10)
    version = done.stdout + done.stderr
    found = re.search(r"Version ([\d.]+)", version)
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({model}), {mem}Linux {platform.release()}, "
        f"Python {platform.python_version()}, dnsperf {found.group(1) if found else '?'}"
    )


def ratios(results: list[RunResult]) -> list[str]:
    by_key = {r.variant.key: r for r in results if r.perf and r.perf.ok}
    out = []

    def qps(key: str) -> float | None:
        r = by_key.get(key)
        return r.perf.qps if r and r.perf else None

    for a, b, what in (
        ("nolog-max", "baseline-max", "full speed, engine (log off) vs baseline"),
        ("pool-max", "baseline-max", "full speed, engine (log pool) vs baseline"),
        ("pool-max", "nolog-max", "full speed, engine log pool vs log off"),
        ("thread-max", "pool-max", "full speed, engine log thread vs pool"),
        ("dot-max", "pool-max", "full speed, DoT clients vs plain UDP (log pool)"),
        ("doh-max", "pool-max", "full speed, DoH clients vs plain UDP (log pool)"),
    ):
        qa, qb = qps(a), qps(b)
        if qa and qb:
            out.append(f"- {what}: {qa:,.0f} / {qb:,.0f} QPS = {qa / qb:.2f}x")
    return out


# The issues' targets (issue 3: engine speed; issue 4: query log), checked on what was measured.
TARGET_P99_S = 0.002
TARGET_SPEEDUP = 10.0


def target_checks(results: list[RunResult], rate: int) -> list[str]:
    """One line per target: what was measured next to it, and whether it was met."""
    out = []
    by_key = {r.variant.key: r for r in results if r.perf and r.perf.ok}
    for r in results:
        p, s = r.perf, r.proc
        if r.variant.server != "engine" or not r.variant.rate or p is None or not p.ok or s is None:
            continue
        logging_on = r.variant.env.get("GLORYHOLE_QUERY_LOG_ENABLED") == "1"
        checks = [
            (f"{p.qps:,.0f} QPS sustained", p.qps >= 0.99 * rate),
            (f"{p.lost:,} lost", p.lost == 0),
            (f"p99 {p.percentiles_s.get(99, 0) * 1000:.2f} ms", p.percentiles_s.get(99, 1) < TARGET_P99_S),
            (f"threads {s.threads_start}→{s.threads_peak}", s.threads_start == s.threads_peak),
        ]
        if logging_on:
            drops = (r.metrics or {}).get("dns_query_log_drops_total")
            checks.append((f"drops {_num(drops)}", drops == 0))
            checks.append(
                (f"rows + not logged {_num(accounted(r))} vs answered {_num(answered(r))}", accounted(r) == answered(r))
            )
        verdict = "met" if all(ok for _, ok in checks) else "NOT met"
        detail = ", ".join(f"{text} {'ok' if ok else 'FAIL'}" for text, ok in checks)
        out.append(f"- target at {rate:,} QPS ({r.label}): {verdict}: {detail}")
    engine, baseline = by_key.get("nolog-max"), by_key.get("baseline-max")
    if engine and baseline and engine.perf and baseline.perf and baseline.perf.qps:
        ratio = engine.perf.qps / baseline.perf.qps
        verdict = "met" if ratio >= TARGET_SPEEDUP else "NOT met"
        out.append(f"- target full speed >= {TARGET_SPEEDUP:.0f}x baseline: {verdict}: {ratio:.1f}x")
    return out


def report(setup: Setup, results: list[RunResult], notes: list[str]) -> str:
    args = setup.args
    parts = [
        f"### Load test: {args.duration}s per run, {args.repeat} run(s) per variant (median shown, QPS range in "
        f"brackets), dnsperf at {args.rate:,} QPS and at full speed",
        "",
        render_table(results),
        "",
    ]
    parts += ratios(results)
    parts += target_checks(results, args.rate)
    parts += [
        "",
        f"- machine: {machine()}",
        f"- command: `{shlex.join([os.path.relpath(sys.executable, REPO) if sys.executable.startswith(str(REPO)) else sys.executable, '-m', 'devtools.load.loadtest', *sys.argv[1:]])}`",  # noqa: E501
        "- dnsperf: `"
        + shlex.join(dnsperf_argv(args, Path("queries.txt"), 0, args.rate)).replace("-p 0", "-p PORT")
        + "` (full speed: no -Q, `-q "
        + str(args.outstanding)
        + "`); dnsperf shares the CPUs with the server",
        "- latency percentiles: nearest rank over dnsperf -v per-query latencies; lost = no reply within "
        f"{args.timeout}s; rows = `querylog_querylog` rows after SIGTERM; answered = the engine's count in its "
        "stop line (it includes replies that reached dnsperf after its timeout)",
    ]
    parts += [f"- {n}" for n in notes]
    for r in results:
        if r.perf and r.perf.kind_percentiles_s:
            split = ", ".join(
                f"{kind} {_ms(pcts[50])} / {_ms(pcts[99])}" for kind, pcts in r.perf.kind_percentiles_s.items()
            )
            parts.append(f"- {r.label}: p50 / p99 ms by kind of name: {split}")
    for r in results:
        extra = []
        if r.summary_line:
            extra.append(f"rundns said: `{r.summary_line}` (stopped in {r.stop_seconds:.1f}s)")
        if r.metrics is None and r.variant.server == "engine" and r.perf:
            extra.append("no metrics endpoint answered")
        if r.log_warnings:
            extra.append(f"{len(r.log_warnings)} warning/error log lines, first: `{r.log_warnings[0][:200]}`")
        extra += r.problems
        if extra:
            parts.append(f"- {r.label}: " + "; ".join(extra))
    return "\n".join(parts)
