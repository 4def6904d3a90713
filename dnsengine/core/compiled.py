"""Whether the compiled extensions may be used, and which they are.

`GLORYHOLE_NO_EXTENSIONS=1` forces the pure-Python path. A module that has a
compiled twin imports it only when `enabled()` and falls back to Python when the
import fails (not built on this machine).
"""

from __future__ import annotations

import os

EXTENSION_MODULES = ("dnsengine.core._mmsg",)


def enabled() -> bool:
    return os.environ.get("GLORYHOLE_NO_EXTENSIONS", "") != "1"
