"""The query-log writer process of mode ``process``: ``python -m querylog.logger.child FD``.

Started by ``querylog.logger.process.ProcessQueryLogger``, one per writer, with one end
of a socket pair as file descriptor FD. It reads the engine's hello (database settings,
engine name, rollups, retry delays), sets Django up, says ready, then writes each batch
it is sent exactly as the pool's writer threads do (``QueryLoggerBase._deliver``:
privacy filter, rows and rollups in one transaction, retries with backoff, one-by-one
after an invalid entry) and acknowledges it after the commit with what became of it.

Two threads: the main one reads messages, so an ``abandon`` (the engine's stop ran out
of time) reaches the database while a write is stuck in it; the writer thread writes.
The process ignores SIGINT, SIGTERM and SIGHUP, which a terminal or a service manager
sends to the whole group: the engine decides when it stops (``stop``, after the drain),
and end of stream (the engine exited or died) stops it too.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import queue
import resource
import signal
import socket
import sys
import threading
import time

from querylog.logger.frames import LinkClosed, entries_from_rows, recv, send

log = logging.getLogger("querylog.logger.child")

# As the pool's writer threads: the connection is renewed this often (seconds).
_CONNECTION_MAX_AGE = 300.0


def _writer_class():
    from querylog.logger.base import QueryLoggerBase

    class ChildWriter(QueryLoggerBase):
        """The pool's write path (retries, give-up, privacy) without its queue: one batch at a time."""

        mode = "process"
        size = 0
        workers = 1

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.given_up: list = []

        def _give_up(self, entries) -> None:
            # The engine decides: it hands them to a successor logger or counts them.
            self.given_up.extend(entries)

    return ChildWriter


class Child:
    def __init__(self, sock: socket.socket, hello: dict) -> None:
        from django.db import connections

        from querylog.privacy import PrivacyState

        self.sock = sock
        self.send_lock = threading.Lock()
        self.flush_interval = hello["flush_interval"]
        self.privacy = PrivacyState()
        self.writer = _writer_class()(
            1,
            writer=None,
            engine_name=hello["engine_name"],
            rollups=hello["rollups"],
            retry_initial=hello["retry_initial"],
            retry_max=hello["retry_max"],
            privacy=self.privacy,
        )
        self.using = getattr(self.writer._writer, "using", None)
        self.batches: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._write_loop, name="querylog-child-writer", daemon=True)
        self._connections = connections

    def _send(self, message: tuple) -> None:
        with self.send_lock:
            send(self.sock, message)

    def run(self) -> None:
        self.thread.start()
        try:
            while True:
                message = recv(self.sock)
                kind = message[0]
                if kind == "batch":
                    self.batches.put((message[1], message[2]))
                elif kind == "policy":
                    self.privacy.policy = pickle.loads(message[1])
                elif kind == "abandon":
                    self.writer._abandon_writes()
                elif kind == "stop":
                    break
        except LinkClosed:
            pass  # the engine exited or died: write what was sent, then go
        self.batches.put(None)
        self.thread.join()

    def _write_loop(self) -> None:
        wal = self.writer._wal
        connected_at = time.monotonic()
        try:
            while True:
                try:
                    item = self.batches.get(timeout=self.flush_interval)
                except queue.Empty:
                    if wal is not None:
                        wal.tend(idle=True)
                    continue
                if item is None:
                    return
                seq, rows = item
                try:
                    ack = self._write(seq, rows)
                except Exception:
                    log.exception("query log writer process: unexpected error")
                    ack = ("ack", seq, 0, 0, list(range(len(rows))), 1, {}, 0.0, (0, 0))
                try:
                    self._send(ack)
                except LinkClosed:
                    pass  # the engine is gone; the main thread sees it too
                if wal is not None:
                    wal.tend(idle=self.batches.empty())
                if time.monotonic() - connected_at > _CONNECTION_MAX_AGE:
                    self._connections.close_all()
                    connected_at = time.monotonic()
        finally:
            self._connections.close_all()

    def _write(self, seq: int, rows: list) -> tuple:
        w = self.writer
        entries = entries_from_rows(rows)
        written, unwritten, errors = w._written, w._unwritten, w._write_errors
        not_logged = self.privacy.not_logged()
        w.given_up = []
        started = time.perf_counter()
        w._deliver(entries, 0)
        seconds = time.perf_counter() - started
        index = {id(e): i for i, e in enumerate(entries)} if w.given_up else {}
        after = self.privacy.not_logged()
        wal = w.wal_stats
        return (
            "ack",
            seq,
            w._written - written,
            w._unwritten - unwritten,
            [index[id(e)] for e in w.given_up],
            w._write_errors - errors,
            {k: n - not_logged.get(k, 0) for k, n in after.items() if n != not_logged.get(k, 0)},
            seconds,
            (wal.truncations, wal.busy),
        )


def _database_apply(database: dict, using: str) -> None:
    """Connect where the engine writes (in tests, its test database), whatever the environment says."""
    from django.db import connections
    from django.db.utils import load_backend

    load_backend(database["ENGINE"])  # a backend that cannot load fails the start, not every batch
    connections.settings[using].update(database)
    connections[using].close()


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    try:
        _, hello = recv(sock)
    except LinkClosed:
        return 1
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", hello["settings_module"])
        import django

        django.setup()
        _database_apply(hello["database"], hello["using"])
        child = Child(sock, hello)
    except Exception as exc:
        log.exception("query log writer process: cannot start")
        try:
            send(sock, ("error", f"{type(exc).__name__}: {exc}"))
        except LinkClosed:
            pass
        return 1
    # As rundns does after its start: what is loaded by now lives as long as the process,
    # so the collector's full passes, which the batches' tuples trigger, need not walk it.
    gc.collect()
    gc.freeze()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    send(sock, ("ready", os.getpid(), usage.ru_utime + usage.ru_stime))
    child.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
