"""Batched UDP I/O on the engine's I/O loop: many datagrams per system call.

With the compiled `_mmsg` extension (Linux, `compiled.enabled()`), the UDP listener
and the upstream UDP sockets read with recvmmsg (up to 64 datagrams per call), and
the datagrams a pass of the loop produces for one socket (the answers to a burst of
queries, the queries it forwards) leave together in one sendmmsg at the end of the
pass (`IoLoop.at_pass_end`). Without it, `mmsg()` is None and the callers keep
their one-datagram-per-call loops.

Datagrams sent from another thread (a TCP retry's answer to a UDP client, a query
forwarded by the TCP listener) are not queued: `BatchedSender.send` returns False
and the caller sends at once, as without the extension.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from types import ModuleType

from dnsengine.core import compiled
from dnsengine.core.ioloop import IoLoop
from dnsengine.core.stats import EngineStats
from dnsengine.core.throttle import RateLimitedLog

logger = logging.getLogger(__name__)
_warn = RateLimitedLog(logger, interval=10.0)

# A socket whose send buffer stays full this long (seconds) has its queued datagrams
# dropped and counted, so a stuck socket cannot hold replies or spin the loop forever.
STALL_LIMIT = 0.1

_UNSET = object()
_module: ModuleType | object | None = _UNSET


def mmsg() -> ModuleType | None:
    """The compiled `_mmsg` module, or None: extensions disabled, not built, or not Linux."""
    global _module
    if _module is _UNSET:
        _module = None
        if not compiled.enabled():
            why = "GLORYHOLE_NO_EXTENSIONS=1"
        elif not sys.platform.startswith("linux"):
            why = "not Linux"
        else:
            try:
                from dnsengine.core import _mmsg

                _module = _mmsg
                why = ""
            except ImportError as exc:
                why = f"the extension is not built ({exc})"
        if why:
            logger.info("UDP I/O: one datagram per system call: %s", why)
        else:
            logger.info("UDP I/O: batched with recvmmsg/sendmmsg")
    return _module  # type: ignore[return-value]


# What a refused datagram is reported with: its tag and the error.
FailedSend = Callable[[object, OSError], None]


class BatchedSender:
    """Datagrams for one UDP socket, queued during a pass of the I/O loop and sent with
    sendmmsg at its end.

    A datagram the kernel refuses is handed to `on_failed(tag, error)`; when the
    socket's send buffer is full the rest is retried on the next passes, and dropped
    and counted (`udp_send_dropped`) if it stays full for `STALL_LIMIT`.
    """

    __slots__ = ("_armed", "_loop", "_on_failed", "_queue", "_sock", "_stalled_since", "_stats")

    def __init__(self, sock: socket.socket, loop: IoLoop, stats: EngineStats, module: ModuleType,
                 on_failed: FailedSend) -> None:  # fmt: skip
        self._sock = sock
        self._loop = loop
        self._stats = stats
        self._queue = module.Sender()
        self._on_failed = on_failed
        self._armed = False
        self._stalled_since: float | None = None

    def send(self, data: bytes, addr=None, tag: object = None) -> bool:
        """Queue `data` for `addr` (None: the connected peer) to go out at the end of the pass.

        False when it was not queued (called off the loop thread, or an address
        sendmmsg cannot take): the caller sends it itself.
        """
        loop = self._loop
        if self._sock is None or not loop.in_loop():
            return False
        queue = self._queue
        if queue.full:
            self.flush()
            if queue.full:
                self._stats.count("udp_send_dropped")
                _warn.warning("UDP send buffer full: a datagram to %s dropped", addr)
                return True
        try:
            queue.queue(data, addr, tag)
        except (ValueError, TypeError, OverflowError, UnicodeError):
            return False
        if not self._armed:
            self._armed = True
            loop.at_pass_end(self.flush)
        return True

    def flush(self) -> None:
        """Send what is queued (loop thread only)."""
        self._armed = False
        queue = self._queue
        if not len(queue) or self._sock is None:
            return
        fd = self._sock.fileno()
        if fd < 0:  # closed under us: nothing can go out
            self._stats.count("udp_send_dropped", queue.clear())
            return
        sent = queue.flush(fd)
        failed = queue.failed
        if len(queue):
            now = time.monotonic()
            if sent or self._stalled_since is None:
                self._stalled_since = now
            elif now - self._stalled_since >= STALL_LIMIT:
                dropped = queue.clear()
                self._stalled_since = None
                self._stats.count("udp_send_dropped", dropped)
                _warn.warning("UDP send buffer full for %.0f ms: %d datagrams dropped", STALL_LIMIT * 1000, dropped)
            if len(queue) and not self._armed:
                self._armed = True
                self._loop.at_pass_end(self.flush)
        else:
            self._stalled_since = None
        for tag, code in failed:
            try:
                self._on_failed(tag, OSError(code, os.strerror(code)))
            except Exception:
                logger.exception("handling a failed UDP send")

    def close(self) -> None:
        """Send what is queued and queue nothing more (loop thread, or the loop stopped):
        called before the socket closes, so a later flush cannot write to a reused descriptor."""
        self.flush()
        left = self._queue.clear()
        if left:
            self._stats.count("udp_send_dropped", left)
        self._sock = None
