"""`rundns --processes N`: one supervisor, N engine worker processes on one port.

The supervisor (the `rundns` process itself) re-executes `manage.py rundns --worker K`
N times; it never loads the configuration or binds a DNS socket. Each worker is a
whole engine (its own writer pool, config watcher, metrics port, heartbeat row) that
binds UDP and TCP (and DoT/DoH) with SO_REUSEPORT, so the kernel spreads the clients
over the workers by their address and port.

A worker tells the supervisor what it did on its standard output, one JSON object a
line: ``{"event": "ready", "port": …}`` once it serves and ``{"event": "stopped",
"queries": …}`` after its log is drained. Its log records go to the standard error it
shares with the supervisor. Worker 0 starts first: with port 0 it picks the port (and
the DoT/DoH ports) and the others are given the same.

Signals: SIGTERM/SIGINT to the supervisor are forwarded to every worker as SIGTERM
(each drains its query log), then the supervisor waits for all and prints one stop line
with their counts summed; SIGHUP is forwarded. The workers run in their own session, so
a terminal's Ctrl-C reaches the supervisor only and is forwarded once. A worker that
dies while serving is restarted after a bounded backoff; the others keep serving. A
worker whose supervisor dies (kill -9) is sent SIGTERM by the kernel
(PR_SET_PDEATHSIG), and also notices its parent is gone within a second, and stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

# A worker that dies within this many seconds of its start counts as a quick death:
# the next restart waits twice as long as the previous one, up to RESTART_MAX_DELAY.
RESTART_MIN_DELAY = 0.5
RESTART_MAX_DELAY = 30.0
RESTART_QUICK_DEATH = 60.0
# Seconds a worker gets to drain after SIGTERM beyond the query log's close timeout.
STOP_GRACE = 30.0
PARENT_POLL_SECONDS = 1.0
PR_SET_PDEATHSIG = 1

COUNTS = ("queries", "written", "dropped", "unwritten", "not_logged")


class WorkerStartError(Exception):
    """A worker exited before serving while the engine was starting; one line."""


def processes_parse(value: str | int, cpu_count: Callable[[], int | None] = os.cpu_count) -> int:
    """`--processes` / GLORYHOLE_DNS_PROCESSES: a positive number or "auto" (the CPUs this process may use)."""
    text = str(value).strip().lower()
    if text == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))  # honours taskset
        except (AttributeError, OSError):
            return max(1, cpu_count() or 1)
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 256:
        raise ValueError(f"GLORYHOLE_DNS_PROCESSES / --processes={value!r} must be a number from 1 to 256 or auto")
    return number


def port_in_use_check(host: str, port: int) -> None:
    """Raise OSError if something holds host:port for UDP or TCP.

    The workers bind with SO_REUSEPORT, which would let them join the sockets of another
    engine still running on the port (same user) instead of failing as a single process
    does. A bind without it fails on any socket there; it is closed again at once.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(family, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the engine: TIME_WAIT is no owner
            sock.bind((host, port))


def heartbeat_name(engine_name: str, worker: int | None) -> str:
    """A worker's EngineStatus row: "<engine name>/<K>"; the status page shows the rows as one engine."""
    return engine_name if worker is None else f"{engine_name}/{worker}"


# --- the worker's side ------------------------------------------------------------------


def report(event: str, **values: object) -> None:
    """One line to the supervisor (the worker's standard output); dropped if the supervisor is gone."""
    try:
        sys.stdout.write(json.dumps({"event": event, **values}) + "\n")
        sys.stdout.flush()
    except OSError:  # BrokenPipeError: nobody reads; keep the interpreter's exit flush from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def parent_watch(parent: int, stop: threading.Event, interval: float = PARENT_POLL_SECONDS) -> threading.Thread:
    """Set `stop` when the supervisor `parent` is gone, so a worker never serves on as an orphan.

    The kernel's PR_SET_PDEATHSIG (Linux) sends SIGTERM at once; the thread, which polls
    getppid(), covers the supervisor dying before the prctl and systems without it.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent:
                logger.warning("the rundns supervisor (pid %d) is gone: stopping", parent)
                stop.set()
                return
            stop.wait(interval)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


# --- the supervisor ---------------------------------------------------------------------


@dataclass(slots=True)
class Worker:
    index: int
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = None
    started: float = 0.0  # time.monotonic() of the last start
    ready: dict | None = None  # the last "ready" report of the running process
    stopped: dict | None = None  # its "stopped" report
    quick_deaths: int = 0
    restart_at: float | None = None  # set while dead and waiting for its restart
    restarts: int = 0


@dataclass(slots=True)
class Totals:
    """The workers' stop counts summed, for the one stop line."""

    queries: int = 0
    written: int = 0
    dropped: int = 0
    unwritten: int = 0
    not_logged: int = 0
    processes: int = 0
    restarts: int = 0
    missing: list[int] = field(default_factory=list)  # workers that gave no stop report

    def add(self, counts: dict) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + int(counts.get(name, 0)))


def manage_py() -> list[str]:
    """How to run this project's manage.py with the interpreter running now."""
    from django.conf import settings

    path = Path(settings.BASE_DIR) / "manage.py"
    return [sys.executable, str(path)] if path.exists() else [sys.executable, "-m", "django"]


def worker_argv(index: int, processes: int, host: str, port: int, wait_report_interval: float) -> list[str]:
    return [*manage_py(), "rundns", "--host", host, "--port", str(port),
            "--wait-report-interval", str(wait_report_interval), "--worker", str(index),
            "--worker-of", str(processes), "--supervisor-pid", str(os.getpid())]  # fmt: skip


class Supervisor:
    """Starts, restarts and stops the workers; run() is called on the main thread.

    Workers are only ever started from the thread that calls run(): the kernel's
    parent-death signal follows the thread that forked, not the process.
    """

    def __init__(self, processes: int, host: str, port: int, *, wait_report_interval: float, stop_timeout: float,
                 say: Callable[[str], None], argv: Callable[..., list[str]] = worker_argv) -> None:  # fmt: skip
        self.processes = processes
        self.host = host
        self.port = port
        self.wait_report_interval = wait_report_interval
        self.stop_timeout = stop_timeout
        self.say = say
        self.argv = argv
        self.workers = [Worker(k) for k in range(processes)]
        self.env = dict(os.environ)
        self.events: queue.Queue[tuple[Worker, subprocess.Popen, dict]] = queue.Queue()
        self.totals = Totals(processes=processes)
        self.first_ready: dict | None = None

    # --- one worker ---

    def _spawn(self, worker: Worker) -> None:
        argv = self.argv(worker.index, self.processes, self.host, self.port, self.wait_report_interval)
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, start_new_session=True)  # fmt: skip
        worker.proc, worker.ready, worker.stopped, worker.restart_at = proc, None, None, None
        worker.started = time.monotonic()
        worker.reader = threading.Thread(target=self._read, args=(worker, proc), name=f"worker-{worker.index}-out",
                                         daemon=True)  # fmt: skip
        worker.reader.start()

    def _read(self, worker: Worker, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            message = None
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
            if isinstance(message, dict) and "event" in message:
                self.events.put((worker, proc, message))
            elif line.strip():
                self.say(f"[worker {worker.index}] {line.rstrip()}")
        proc.stdout.close()

    def _take_events(self) -> None:
        while True:
            try:
                worker, proc, message = self.events.get_nowait()
            except queue.Empty:
                return
            if proc is not worker.proc:
                continue  # from an earlier process of this worker, already accounted
            if message["event"] == "ready":
                worker.ready = message
            elif message["event"] == "stopped":
                worker.stopped = message

    def _exited(self, worker: Worker) -> int | None:
        """The exit status once the worker's process ended and its output is read; None while it runs."""
        code = worker.proc.poll() if worker.proc is not None else None
        if code is None:
            return None
        worker.reader.join(5)
        self._take_events()
        return code

    def _retire(self, worker: Worker) -> None:
        """Add what an ended process reported to the totals (nothing if it was killed before it could)."""
        if worker.stopped is not None:
            self.totals.add(worker.stopped)
        elif worker.ready is not None:
            self.totals.missing.append(worker.index)
        worker.proc = None

    # --- start, serve, stop ---

    def _wait_ready(self, workers: list[Worker], stop: threading.Event) -> bool:
        """True once every worker in `workers` serves; False if `stop` came first. Raises WorkerStartError."""
        while True:
            self._take_events()
            if all(w.ready is not None for w in workers):
                return True
            for w in workers:
                code = self._exited(w)
                if code is not None and w.ready is None:
                    raise WorkerStartError(f"engine worker {w.index} exited with status {code} before serving")
            if stop.wait(0.05):
                return False

    def start(self, stop: threading.Event) -> dict | None:
        """Start worker 0, then the others on its port; its "ready" report, or None if `stop` came before it served."""
        first = self.workers[0]
        self._spawn(first)
        try:
            if not self._wait_ready([first], stop):
                return None
            ready = first.ready
            self.port = ready["port"]
            # The others bind what worker 0 bound (port 0 means "any free port" only for the first).
            for name, key in (("GLORYHOLE_DOT_PORT", "dot_port"), ("GLORYHOLE_DOH_PORT", "doh_port")):
                if ready.get(key):
                    self.env[name] = str(ready[key])
            for worker in self.workers[1:]:
                self._spawn(worker)
            # A stop meanwhile: worker 0 serves already, so the caller goes on to stop()
            # and its stop line (serve() returns at once).
            self._wait_ready(self.workers, stop)
        except WorkerStartError:
            self.stop()
            raise
        self.first_ready = ready
        return ready

    def serve(self, stop: threading.Event, hup: threading.Event) -> None:
        """Until `stop`: forward SIGHUP, restart a worker that died."""
        while not stop.wait(0.2):
            if hup.is_set():
                hup.clear()
                self._signal_all(signal.SIGHUP)
            self.tend()

    def tend(self, now: float | None = None) -> None:
        """One look at the workers: start those whose restart is due, schedule one for each that died."""
        self._take_events()
        now = time.monotonic() if now is None else now
        for worker in self.workers:
            if worker.proc is None:
                if worker.restart_at is not None and now >= worker.restart_at:
                    worker.restarts += 1
                    self.totals.restarts += 1
                    self._spawn(worker)
                    logger.warning("engine worker %d restarted (pid %d)", worker.index, worker.proc.pid)
                continue
            code = self._exited(worker)
            if code is None:
                continue
            lived = now - worker.started
            worker.quick_deaths = worker.quick_deaths + 1 if lived < RESTART_QUICK_DEATH else 0
            delay = min(RESTART_MAX_DELAY, RESTART_MIN_DELAY * 2 ** max(0, worker.quick_deaths - 1))
            logger.error(
                "engine worker %d (pid %d) exited with status %d after %.0f s; restarting it in %.1f s",
                worker.index, worker.proc.pid, code, lived, delay,
            )  # fmt: skip
            self._retire(worker)
            worker.restart_at = now + delay

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signum)

    def stop(self) -> Totals:
        """SIGTERM to every worker, wait until each drained its log (SIGKILL past stop_timeout), sum their counts."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("engine worker %d did not stop within %.0f s of SIGTERM: killed", worker.index,
                             self.stop_timeout)  # fmt: skip
                worker.proc.kill()
                worker.proc.wait()
            self._exited(worker)
            self._retire(worker)
        return self.totals
