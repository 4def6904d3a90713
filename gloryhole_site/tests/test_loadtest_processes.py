"""The load test's rundns command line with --processes, and its sums over the workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from devtools.load import harness
from devtools.load.loadtest import engine_argv, parse_args, select_variants


def setup_for(*argv: str) -> SimpleNamespace:
    return SimpleNamespace(args=parse_args(list(argv)), python="py")


def variant(key: str, *argv: str):
    (found,) = [v for v in select_variants(parse_args(["--variants", key, *argv])) if v.key == key]
    return found


def test_pool2p_runs_rundns_with_two_processes_under_the_server_pin():
    setup = setup_for("--pin-server", "1")

    argv = engine_argv(setup, variant("pool2p-10k"), 5300)

    # taskset execs rundns with the mask; the workers it starts inherit it.
    assert argv == ["taskset", "-c", "1", "py", "manage.py", "rundns", "--host", "127.0.0.1", "--port", "5300",
                    "--processes", "2"]  # fmt: skip
    assert variant("pool2p-max").rate is None
    assert variant("pool2p-10k").label(10_000) == "engine, log pool, 2 processes @ 10k QPS"


def test_processes_on_the_command_line_reach_the_variants_that_do_not_set_it():
    setup = setup_for("--processes", "3")

    assert engine_argv(setup, variant("pool-max"), 53)[-2:] == ["--processes", "3"]
    assert engine_argv(setup, variant("pool2p-max"), 53)[-2:] == ["--processes", "2"]
    assert "--processes" not in engine_argv(setup_for(), variant("pool-max"), 53)


def test_metrics_are_summed_over_the_workers_that_answer(monkeypatch):
    answers = {9000: {"dns_queries_total": 5.0, "only_here": 1.0}, 9001: {"dns_queries_total": 7.0}, 9002: None}
    monkeypatch.setattr(harness, "scrape_metrics", answers.get)

    assert harness.scrape_metrics_sum([9000, 9001, 9002]) == {"dns_queries_total": 12.0, "only_here": 1.0}
    assert harness.scrape_metrics_sum([9002]) is None


@pytest.mark.integration
def test_the_sampler_counts_the_child_processes_cpu():
    # A parent that starts a child that burns ~0.3 s of CPU half a second later, then sleeps.
    burn = "import time\ntime.sleep(0.5)\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ntime.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess,sys,time\n"
                               f"subprocess.Popen([sys.executable,'-c',{burn!r}])\ntime.sleep(30)"])  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while len(harness.process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with harness.Sampler(parent.pid) as sampler:
            time.sleep(1.5)
        assert len(sampler.pids) == 2
        assert sampler.sample.threads_start == 2
        assert sampler.sample.cpu_seconds > 0.1  # the child's, which /proc/<parent>/stat does not hold
    finally:
        for pid in harness.process_tree(parent.pid)[1:]:
            os.kill(pid, 9)
        parent.kill()
        parent.wait()
