"""Helpers for an engine running in the test process (the `engine` fixture)."""

from __future__ import annotations

from dnsengine.services import config_generation_current
from dnsengine.services.pause import blocking_paused_until


def engine_reload(engine) -> None:
    """Make a running engine serve the database's current configuration.

    The engine's own watcher thread polls as well and may load it first, in which case
    ``load_now()`` finds nothing new: so this checks the watcher's state, not its answer.
    """
    watcher = engine.watcher
    watcher.load_now()
    assert watcher.generation == config_generation_current()
    assert watcher.paused_until == blocking_paused_until(watcher.wall_clock())
