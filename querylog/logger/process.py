"""``ProcessQueryLogger`` (mode ``process``): the pool's bounded queue, written by child processes.

The queue, ``log_async``, drop counting, batching and the drain on ``close()`` are the
pool's (``QueryLogger``, which this subclasses). What differs is who writes: each
writer thread here is a feeder that owns one child process (``querylog.logger.child``)
and, per batch, turns the entries into plain tuples, sends them through a socket pair
(``querylog.logger.frames``) and waits for the child's acknowledgement, which comes after
the commit. Building the rows, the rollups, the privacy filter and the database
driver's work all happen in the child, under its own GIL, so the DNS threads never
wait for them (figures: docs/querylog.md, "Writer process").

Accounting stays exact: a batch counts as written only after its ack; the ack also says
which entries were invalid (unwritten), kept out by the privacy policy (not logged) or
given up on (handed to a successor logger or counted unwritten). A child that dies
before acknowledging a batch is restarted and the batch sent once more; if that fails
too the batch counts as unwritten. While no child can be started the feeder takes
nothing, so the queue fills and what overflows is counted as drops; DNS goes on.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from dnsengine.core.entry import QueryLogEntry
from dnsengine.core.throttle import RateLimitedLog
from querylog.logger.counters import CloseReport
from querylog.logger.frames import LinkClosed, batch_rows, recv, send
from querylog.logger.pool import QueryLogger
from querylog.privacy import PrivacyPolicy, PrivacyState
from querylog.sqlite_wal import WalStats

log = logging.getLogger(__name__)

# Seconds a child may take to set Django up and connect before it counts as failed.
CHILD_START_TIMEOUT = 60.0
# Seconds a child may take to exit after "stop" (it has nothing left to write by then).
CHILD_STOP_TIMEOUT = 10.0
# The database settings a child needs to connect where the engine writes.
_DATABASE_KEYS = (
    "ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS",
    "TIME_ZONE", "AUTOCOMMIT", "ATOMIC_REQUESTS",
)  # fmt: skip
_PROJECT_DIR = str(Path(__file__).resolve().parent.parent.parent)


class ChildFailed(Exception):
    """A writer process could not be started, or went away before acknowledging a batch."""


class ChildLink:
    """One writer process and the socket to it; used by one feeder thread (abandon/kill from any)."""

    def __init__(self, hello: dict) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_DIR, env.get("PYTHONPATH", "")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "querylog.logger.child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            ours.close()
            raise ChildFailed(f"cannot start the writer process: {exc}") from exc
        finally:
            theirs.close()
        self.sock = ours
        self._send_lock = threading.Lock()
        self.policy: PrivacyPolicy | None = None  # the policy the child was last sent
        self._seq = 0
        try:
            ours.settimeout(CHILD_START_TIMEOUT)
            self._send(("hello", hello))
            reply = recv(ours)
            ours.settimeout(None)
        except Exception as exc:  # gone, too slow, or a setting marshal cannot carry
            self.kill()
            ours.close()
            raise ChildFailed(f"the writer process did not start: {type(exc).__name__}: {exc}") from exc
        if reply[0] != "ready":
            self.kill()
            ours.close()
            raise ChildFailed(f"the writer process could not start: {reply[1] if len(reply) > 1 else reply}")
        self.pid = self.proc.pid
        self.start_cpu = reply[2]  # CPU seconds the child's start took (Django, imports)

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            send(self.sock, message)

    def write(self, rows: list[tuple], policy: PrivacyPolicy | None) -> tuple:
        """Send one batch and wait for its ack; ChildFailed if the child goes away first."""
        self._seq += 1
        seq = self._seq
        try:
            if policy is not None and policy is not self.policy:
                self._send(("policy", pickle.dumps(replace(policy))))
                self.policy = policy
            self._send(("batch", seq, rows))
            ack = recv(self.sock)
        except LinkClosed as exc:
            raise ChildFailed(f"the writer process went away (pid {self.pid}, {self._exit_status()}): {exc}") from exc
        if ack[0] != "ack" or ack[1] != seq:
            self.kill()
            raise ChildFailed(f"the writer process answered out of turn: {ack[:2]}")
        return ack

    def _exit_status(self) -> str:
        try:
            code = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"exit status {code}"

    def abandon(self) -> None:
        """The stop is out of time: the child gives up its retries and interrupts its write."""
        try:
            self._send(("abandon",))
        except LinkClosed:
            pass

    def close(self, timeout: float = CHILD_STOP_TIMEOUT) -> None:
        try:
            self._send(("stop",))
        except LinkClosed:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("query log writer process %d did not stop in %.0f s: killed", self.proc.pid, timeout)
            self.kill()
        self.sock.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class ProcessQueryLogger(QueryLogger):
    """The pool's bounded queue in the engine; the writes in ``workers`` child processes."""

    mode = "process"

    def __init__(
        self,
        buffer_size: int,
        workers: int,
        batch_size: int,
        flush_interval: float,
        engine_name: str = "",
        *,
        rollups: bool = True,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
        privacy: PrivacyState | None = None,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        # The writer placeholder has no `using`: the engine keeps no WAL of its own (the
        # children do) and its feeders never touch the database.
        super().__init__(
            buffer_size,
            workers,
            batch_size,
            flush_interval,
            engine_name,
            rollups=rollups,
            writer=_written_by_children,
            retry_initial=retry_initial,
            retry_max=retry_max,
            privacy=privacy,
        )
        self._engine_name = engine_name
        self._rollups = rollups
        self._using = using
        self._local = threading.local()
        self._links: set[ChildLink] = set()
        self._links_lock = threading.Lock()
        self._child_wal = WalStats()
        self._start_log = RateLimitedLog(log, 30.0)
        self.children_started = 0
        self.children_start_cpu = 0.0  # CPU seconds the children's starts took, for the bench

    @property
    def wal_stats(self) -> WalStats:
        return replace(self._child_wal)

    @property
    def child_pids(self) -> list[int]:
        with self._links_lock:
            return [link.pid for link in self._links if link.alive]

    def _hello(self) -> dict:
        database = connections[self._using].settings_dict
        return {
            "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE,
            "using": self._using,
            "database": {k: database[k] for k in _DATABASE_KEYS if k in database},
            "engine_name": self._engine_name,
            "rollups": self._rollups,
            "retry_initial": self._retry_initial,
            "retry_max": self._retry_max,
            "flush_interval": self._flush_interval,
        }

    # -- the feeder's child -------------------------------------------------------------

    def _link(self) -> ChildLink | None:
        """This feeder's child, started if need be; None once close() has given up."""
        link = getattr(self._local, "link", None)
        if link is not None:
            return link
        delay = self._retry_initial
        while not self._abandon.is_set():
            try:
                link = ChildLink(self._hello())
            except ChildFailed as exc:
                self._count_error()
                self._start_log.log(logging.ERROR, "query log: %s; retrying in %.2f s", exc, delay)
            except Exception:
                # A bug, not a child that failed: keep the feeder (a dead one would silently
                # stop all logging) and try again, as a failed start.
                self._count_error()
                log.exception("query log: cannot start a writer process; retrying in %.2f s", delay)
            else:
                with self._links_lock:
                    self._links.add(link)
                    self.children_started += 1
                    self.children_start_cpu += link.start_cpu
                self._local.link = link
                if self._abandon.is_set():  # close() gave up while it started: it never saw this one
                    link.abandon()
                return link
            if self._abandon.wait(delay):
                break
            delay = min(delay * 2, self._retry_max)
        return None

    def _link_drop(self, link: ChildLink) -> None:
        self._local.link = None
        with self._links_lock:
            self._links.discard(link)
        link.kill()
        link.sock.close()

    def _run(self) -> None:
        try:
            self._link()  # at start, not at the first batch: setting Django up takes a moment
            super()._run()
        finally:
            link = getattr(self._local, "link", None)
            if link is not None:
                link.close()
                with self._links_lock:
                    self._links.discard(link)

    # -- writing -------------------------------------------------------------------------

    def _deliver(self, batch: list[QueryLogEntry], depth: int, pacer=None) -> None:
        # pacer: not needed here. The pool rests while catching up so the DNS thread gets
        # the GIL; a child's work never holds this process's GIL.
        with self._stats_lock:
            self._inflight += len(batch)
        try:
            rows = batch_rows(batch)
            privacy = self._privacy
            for attempt in (1, 2):
                link = self._link()
                if link is None:
                    break  # close() gave up
                try:
                    ack = link.write(rows, privacy.policy if privacy is not None else None)
                except ChildFailed as exc:
                    self._count_error()
                    self._link_drop(link)
                    self._error_log.log(
                        logging.ERROR,
                        "query log: %s; %s",
                        exc,
                        "sending its batch to a new one" if attempt == 1 else "its batch is not written",
                    )
                    continue
                self._settle(batch, depth, ack)
                return
            self._give_up(batch)
        finally:
            with self._stats_lock:
                self._inflight -= len(batch)

    def _settle(self, batch: list[QueryLogEntry], depth: int, ack: tuple) -> None:
        _, _, written, invalid, given_up, errors, not_logged, seconds, wal = ack
        with self._stats_lock:
            self._write_errors += errors
            self._unwritten += invalid
            self._child_wal = WalStats(*wal)
        if written:
            self._record(written, seconds, depth)
        if not_logged and self._privacy is not None:
            self._privacy.count(not_logged)
        if given_up:
            self._give_up([batch[i] for i in given_up])

    # -- stopping -------------------------------------------------------------------------

    def _abandon_writes(self) -> None:
        super()._abandon_writes()
        with self._links_lock:
            links = list(self._links)
        for link in links:
            link.abandon()

    def close(self, timeout: float = 30.0) -> CloseReport:
        report = super().close(timeout)
        # A feeder still waiting for its child after the grace: its batch is already
        # counted unwritten, so the child must not commit it after all.
        with self._links_lock:
            links = list(self._links)
        for link in links:
            if link.alive:
                log.error("query log writer process %d still busy after the stop's deadline: killed", link.pid)
                link.kill()
        return report

    def kill_children(self) -> None:
        """Kill the writer processes (tests: a crash mid-run)."""
        with self._links_lock:
            links = list(self._links)
        for link in links:
            link.proc.kill()


def _written_by_children(entries) -> None:
    raise AssertionError("ProcessQueryLogger writes through its child processes")
