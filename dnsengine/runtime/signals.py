"""Signals to threading.Events, without the deadlock of Event.set() in a signal handler.

A Python signal handler runs on the main thread between two bytecodes, possibly
while that thread is inside ``event.wait()`` holding the Event's internal lock:
``event.set()`` there blocks for ever on a lock its own thread holds (reproduced with
Python 3.11 for about one SIGTERM in sixty with a short wait loop). The handler here
only puts the signal on a SimpleQueue, whose put() may be called from a handler, and
a small thread sets the Event.
"""

from __future__ import annotations

import queue
import signal
import threading


def signal_events(events: dict[int, threading.Event]) -> threading.Thread:
    """Set events[signum] whenever signum arrives; returns the (daemon) thread that does it."""
    arrived: queue.SimpleQueue[int] = queue.SimpleQueue()

    def relay() -> None:
        while True:
            events[arrived.get()].set()

    thread = threading.Thread(target=relay, name="signals", daemon=True)
    thread.start()
    for signum in events:
        signal.signal(signum, lambda signum, _frame: arrived.put(signum))
    return thread
