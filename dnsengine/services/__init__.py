"""Writes to dnsengine's tables, one module per entity, functions named `<entity>_<action>`.

- `domains`: block (through the guard rails) and allow one name.
- `blocklists`: switch a list on or off, load an uploaded list.
- `pause`: pause and resume blocking, and read the pause state.
- `clients`: name a client and move it to a group.
- `groups`: create, rename and delete client groups; their policy, lists and time windows.
- `forwarding`: add, change and delete conditional-forwarding rules.
- `config_generation`: the counter the engines poll to reload.
- `admin_log`: the LogEntry record every change from the web leaves.

Each write runs in one transaction; an ORM save of what the engine serves bumps
the config generation (`dnsengine.signals`), so the engines reload. Views call
these with the acting user and plain values, never the request.

The config generation functions are re-exported here: the engine runtime, the
blocklist import and the tools call them as `dnsengine.services.config_generation_*`.
Nothing else is, so importing this package does not import the blocklist
import code (which itself imports the config generation).
"""

from __future__ import annotations

from dnsengine.services.config_generation import config_generation_bump, config_generation_current

__all__ = ["config_generation_bump", "config_generation_current"]
