"""One thread that waits on many sockets: the engine's UDP listener and its upstream sockets
(UDP, and the TLS and HTTPS connections of encrypted upstreams).

Why one thread for both: with the GIL, a listener thread and an upstream
receiver thread cannot run Python at the same time anyway, and every packet
that crosses from one to the other costs a GIL hand-off (a futex wake and a
context switch, sometimes a wait of up to the switch interval). Profiling the
two-thread design under dnsperf showed about a third of the listener's samples
waiting in `sendto`'s return for the GIL. In one thread, a cache miss goes out
and its reply comes back on the same thread, and a burst of packets is read
in one pass per socket.

Readers are callbacks `callback(sock)` run when `sock` is readable; each reads
until the socket is empty or its own batch limit. Tickers are callbacks
`ticker(now) -> seconds until it wants to run again` (timeouts, re-probes).
End-of-pass hooks (`at_pass_end`) run once, after the readers, calls and tickers of
the pass that registered them and before the loop waits again: the batched UDP
senders (`dnsengine.core.batchio`) flush every datagram queued in the pass with one
sendmmsg there. Adding and removing readers is safe from any thread. Linux only (epoll), like
the rest of the engine's deployment; `selectors` costs a SelectorKey per event,
which showed in profiles.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

Reader = Callable[[socket.socket], None]
Ticker = Callable[[float], float | None]

IDLE_WAIT = 0.5  # seconds the loop sleeps when no ticker wants it sooner
# How long the loop waits when an end-of-pass hook asked to run again (a send buffer was full).
RETRY_WAIT = 0.001


class IoLoop:
    def __init__(self, name: str = "dns-io") -> None:
        self.name = name
        self._epoll = select.epoll()
        self._readers: dict[int, tuple[socket.socket, Reader]] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._epoll.register(self._wake_r.fileno(), select.EPOLLIN)
        self._tickers: list[list] = []  # [ticker, monotonic time it wants to run next]
        self._calls: deque[Callable[[], None]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ident: int | None = None  # the loop thread's, while it runs passes
        self._pass_end: list[Callable[[], None]] = []

    # -- from any thread --------------------------------------------------------------

    def add_reader(self, sock: socket.socket, callback: Reader) -> None:
        def add() -> None:
            self._readers[sock.fileno()] = (sock, callback)
            self._epoll.register(sock.fileno(), select.EPOLLIN)

        self._run_in_loop(add)

    def remove_reader(self, sock: socket.socket) -> None:
        """Stop watching `sock`; when this returns, its callback is not running and will not run again."""

        def remove() -> None:
            fd = sock.fileno()
            if self._readers.pop(fd, None) is not None:
                try:
                    self._epoll.unregister(fd)
                except OSError:
                    pass

        self._run_in_loop(remove)

    def watch(self, sock: socket.socket, callback: Reader, writable: bool) -> None:
        """Like add_reader, and `callback` also runs when `sock` is writable while `writable`
        is set; calling it again for the same socket changes what is watched. The encrypted
        upstream connections use it for a connect in progress and a full send buffer."""

        def apply() -> None:
            fd = sock.fileno()
            events = select.EPOLLIN | (select.EPOLLOUT if writable else 0)
            if fd in self._readers:
                self._epoll.modify(fd, events)
            else:
                self._epoll.register(fd, events)
            self._readers[fd] = (sock, callback)

        self._run_in_loop(apply)

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread and wait for it (directly when the loop is not running)."""
        self._run_in_loop(fn)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread after the current pass, without waiting for it."""
        self._calls.append(fn)
        if threading.current_thread() is not self._thread:
            self.wake()

    def add_ticker(self, ticker: Ticker) -> None:
        self._run_in_loop(lambda: self._tickers.append([ticker, 0.0]))

    def remove_ticker(self, ticker: Ticker) -> None:
        """Stop running `ticker` (a forwarder replaced while the loop runs)."""

        def remove() -> None:
            self._tickers[:] = [slot for slot in self._tickers if slot[0] != ticker]

        self._run_in_loop(remove)

    def wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake is pending anyway) or closed
            pass

    def in_loop(self) -> bool:
        """Is the caller the loop thread, in a pass (so an `at_pass_end` hook will run)?"""
        return threading.get_ident() == self._ident

    def at_pass_end(self, fn: Callable[[], None]) -> None:
        """Run `fn` once at the end of the current pass (loop thread only, see `in_loop`).
        A hook registered by a hook runs in the same pass, unless the hook registering it
        was itself run that way: then it runs in the next pass, after a short wait."""
        self._pass_end.append(fn)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- inside ------------------------------------------------------------------------

    def _run_in_loop(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread and wait for it; directly when the loop is not running."""
        if not self.running or threading.current_thread() is self._thread:
            fn()
            return
        done = threading.Event()

        def call() -> None:
            try:
                fn()
            finally:
                done.set()

        self._calls.append(call)
        self.wake()
        if not done.wait(5.0):  # pragma: no cover - the loop thread is stuck
            logger.warning("%s: a call did not run within 5 s", self.name)

    def _run(self) -> None:
        poll = self._epoll.poll
        readers = self._readers
        wake_fd = self._wake_r.fileno()
        monotonic = time.monotonic
        self._ident = threading.get_ident()
        try:
            self._passes(poll, readers, wake_fd, monotonic)
        finally:
            self._ident = None

    def _passes(self, poll, readers, wake_fd, monotonic) -> None:
        timeout = 0.0
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                events = poll(timeout)
            except (OSError, ValueError):  # closed by stop()
                return
            for fd, _ in events:
                reader = readers.get(fd)
                if reader is None:
                    if fd == wake_fd:
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                    continue  # removed by an earlier callback of this pass
                try:
                    reader[1](reader[0])
                except Exception:  # a bug must not kill the thread every query depends on
                    logger.exception("%s: reader failed", self.name)
            if self._calls:
                while self._calls:
                    self._calls.popleft()()
                next_tick = 0.0  # a ticker may have been added
            now = monotonic()
            if now >= next_tick:
                next_tick = self._run_tickers(now)
            timeout = 0.0 if self._calls else max(0.0, next_tick - now)
            if self._pass_end and self._end_pass():
                timeout = min(timeout, RETRY_WAIT)
        # Whoever waits on a call queued after the stop is released.
        while self._calls:
            self._calls.popleft()()
        while self._pass_end and self._end_pass():
            time.sleep(RETRY_WAIT)

    def _end_pass(self) -> bool:
        """Run the end-of-pass hooks, and those they register; True when some asked to run
        again next pass."""
        for _ in range(2):
            hooks = self._pass_end
            self._pass_end = []
            for hook in hooks:
                try:
                    hook()
                except Exception:
                    logger.exception("%s: end-of-pass hook failed", self.name)
            if not self._pass_end:
                return False
        return True

    def _run_tickers(self, now: float) -> float:
        """Run the tickers that are due; returns when the next one is."""
        soonest = now + IDLE_WAIT
        for slot in self._tickers:
            if now >= slot[1]:
                try:
                    wanted = slot[0](now)
                except Exception:
                    logger.exception("%s: ticker failed", self.name)
                    wanted = None
                slot[1] = now + (IDLE_WAIT if wanted is None else max(0.0, wanted))
            soonest = min(soonest, slot[1])
        return soonest
