"""An optional KEY=VALUE file of settings, read at start-up and again on SIGHUP.

A running process cannot see changes to its environment, so settings that may
change without a restart (the query-log ones) are re-read from this file when
rundns gets SIGHUP. At start-up the real environment wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def read_env_file(path: Path) -> dict[str, str]:
    """Parse `KEY=VALUE` lines; `#` comments and blank lines are ignored, quotes stripped."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"GLORYHOLE_ENV_FILE={str(path)!r} cannot be read: {exc}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ImproperlyConfigured(f"GLORYHOLE_ENV_FILE={str(path)!r} line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def apply_env_file(path: Path, *, override: bool, prefix: str = "") -> dict[str, str]:
    """Copy the file's values (those starting with `prefix`) into os.environ; returns them."""
    values = {k: v for k, v in read_env_file(path).items() if k.startswith(prefix)}
    for key, value in values.items():
        if override or key not in os.environ:
            os.environ[key] = value
    return values
