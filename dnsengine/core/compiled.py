"""The compiled twin of the DNS core: which modules have one, and the switch that imports it.

The hot modules listed in ``COMPILED`` are plain Python and stay the reference: ``setup.py``
compiles each ``.py`` itself with Cython into a ``.so`` beside it (``make ext``), and
writes ``MANIFEST`` with the SHA-256 of every source it compiled. ``EXTENSION_MODULES`` are
modules that exist only as ``.pyx`` (batched socket I/O), so they have no pure twin;
their callers import them only when ``enabled()`` and fall back to the Python path.

``install()`` (called by ``dnsengine/__init__.py``, before any core module is imported)
puts ``SwitchFinder`` first on ``sys.meta_path``. For a listed module it returns the
``.so`` only when ``GLORYHOLE_NO_EXTENSIONS`` is not ``1`` and the ``.so`` was built from
the source that is there now; otherwise the ``.py``, and ``status()`` says why. Without
it Python's own finder would prefer a ``.so`` over the ``.py`` whatever its age.

Plain Python without Django: setup.py reads the lists from here before Django exists.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ENV_DISABLE = "GLORYHOLE_NO_EXTENSIONS"

# The .py modules compiled in place, chosen by measurement (docs/architecture.md, "The compiled twin").
COMPILED: tuple[str, ...] = (
    "dnsengine.core.wire",
    "dnsengine.core.cache",
    "dnsengine.core.resolver",
    "dnsengine.core.server",
    "dnsengine.core.ioloop",
    "dnsengine.core.upstream",
    "dnsengine.core.rules",
    "dnsengine.core.groups",
    "dnsengine.core.stats",
    "dnsengine.core.special",
    "dnsengine.core.ratelimit",
    "dnsengine.core.access",
    "dnsengine.core.clients",
    "dnsengine.core.localrecords",
    "dnsengine.core.forwarding",
)

# Modules that exist only as .pyx, compiled when their file exists (a missing one is skipped).
EXTENSION_MODULES: tuple[str, ...] = ("dnsengine.core._mmsg",)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Written by setup.py after a build, gitignored:
# {"python": "3.11.7", "modules": {name: {"source": sha256, "so": file name}}}.
MANIFEST = os.path.join(ROOT, "dnsengine", "core", "_compiled.json")

COMPILED_MODE = "compiled"
PYTHON_MODE = "python"


@dataclass(frozen=True, slots=True)
class ModuleStatus:
    mode: str  # COMPILED_MODE | PYTHON_MODE
    reason: str  # why, for the start line and /metrics: "", "GLORYHOLE_NO_EXTENSIONS=1", "not built", "stale: ..."
    file: str  # the file imported (or that would be)


def disabled() -> bool:
    """True when GLORYHOLE_NO_EXTENSIONS=1 forces the pure-Python path."""
    return os.environ.get(ENV_DISABLE, "").strip() == "1"


def source_path(name: str, suffix: str = ".py") -> str:
    return os.path.join(ROOT, *name.split(".")) + suffix


def extension_path(name: str) -> str | None:
    """The built .so (or .pyd) for a module, None when there is none."""
    base = os.path.join(ROOT, *name.split("."))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return base + suffix
    return None


def source_digest(source: str) -> str:
    """SHA-256 of a module's source and of the .pxd beside it, if any (Cython compiles both)."""
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        digest.update(f.read())
    pxd = os.path.splitext(source)[0] + ".pxd"
    if pxd != source and os.path.exists(pxd):
        with open(pxd, "rb") as f:
            digest.update(b"\0pxd\0" + f.read())
    return digest.hexdigest()


def read_manifest(path: str = MANIFEST) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest(modules: dict[str, dict[str, str]], path: str = MANIFEST) -> None:
    """setup.py's record of what it built: each module's source hash and its .so's name."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"python": sys.version.split()[0], "modules": modules}, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class SwitchFinder:
    """Finds the listed modules: the .so when allowed and fresh, else the .py (SourceFileLoader).

    Decisions are made once per module (at its first import) and kept for ``status()``.
    """

    def __init__(
        self,
        root: str = ROOT,
        manifest: str = MANIFEST,
        compiled: tuple[str, ...] = COMPILED,
        extensions: tuple[str, ...] = EXTENSION_MODULES,
    ) -> None:
        self.root = root
        self.manifest_path = manifest
        self.compiled = frozenset(compiled)
        self.extensions = frozenset(extensions)
        self.decisions: dict[str, ModuleStatus] = {}
        self._manifest: dict | None = None
        self._lock = threading.Lock()

    # importlib's MetaPathFinder protocol
    def find_spec(self, fullname: str, path=None, target=None):
        if fullname in self.compiled:
            status = self.decide(fullname)
            if status.mode == COMPILED_MODE:
                loader = importlib.machinery.ExtensionFileLoader(fullname, status.file)
            elif not os.path.exists(status.file):
                return None  # no source either: Python's finders say what is missing
            else:
                loader = importlib.machinery.SourceFileLoader(fullname, status.file)
            return importlib.util.spec_from_file_location(fullname, status.file, loader=loader)
        if fullname in self.extensions:
            status = self.decide(fullname)
            if status.mode != COMPILED_MODE:
                # No pure twin: the caller falls back to its Python path on ImportError.
                raise ModuleNotFoundError(f"{fullname} not used: {status.reason}", name=fullname)
            loader = importlib.machinery.ExtensionFileLoader(fullname, status.file)
            return importlib.util.spec_from_file_location(fullname, status.file, loader=loader)
        return None

    def invalidate_caches(self) -> None:
        with self._lock:
            self._manifest = None
            self.decisions.clear()

    def manifest(self) -> dict:
        if self._manifest is None:
            self._manifest = read_manifest(self.manifest_path)
        return self._manifest

    def decide(self, name: str) -> ModuleStatus:
        with self._lock:
            status = self.decisions.get(name)
            if status is None:
                status = self.decisions[name] = self._decide(name)
                if status.reason.startswith("stale"):
                    logger.warning("%s: %s; using the Python source (make ext rebuilds it)", name, status.reason)
        return status

    def _decide(self, name: str) -> ModuleStatus:
        base = os.path.join(self.root, *name.split("."))
        source = base + (".py" if name in self.compiled else ".pyx")
        fallback = PYTHON_MODE
        # Extension-only modules are imported by callers that ask enabled() first (and by their own
        # tests in either mode), so the switch only keeps a missing or stale .so from them.
        if disabled() and name in self.compiled:
            return ModuleStatus(fallback, f"{ENV_DISABLE}=1", source)
        so = next((base + s for s in importlib.machinery.EXTENSION_SUFFIXES if os.path.exists(base + s)), None)
        if so is None:
            return ModuleStatus(fallback, "not built", source)
        entry = self.manifest().get("modules", {}).get(name)
        if not isinstance(entry, dict) or "source" not in entry:
            return ModuleStatus(fallback, "stale: not in the build's manifest", source)
        try:
            current = source_digest(source)
        except OSError:
            # A .so shipped without its source: nothing to compare, nothing else to import.
            return ModuleStatus(COMPILED_MODE, "", so)
        if current != entry["source"]:
            return ModuleStatus(fallback, f"stale: {os.path.basename(source)} changed since the build", source)
        if entry.get("so") and entry["so"] != os.path.basename(so):
            return ModuleStatus(fallback, f"stale: {os.path.basename(so)} is not the file the build made", source)
        return ModuleStatus(COMPILED_MODE, "", so)


_finder: SwitchFinder | None = None


def install() -> SwitchFinder:
    """Put the switch first on sys.meta_path (once per process) and return it."""
    global _finder
    if _finder is None:
        _finder = SwitchFinder()
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    return _finder


def status() -> dict[str, ModuleStatus]:
    """Per listed module: "compiled" or "python" and why, as decided at import (or as it would be now)."""
    finder = install()
    return {name: finder.decide(name) for name in COMPILED}


def enabled() -> bool:
    """Whether extension-only modules (EXTENSIONS) may be imported: not disabled by GLORYHOLE_NO_EXTENSIONS."""
    return not disabled()


def loaded_mode(name: str) -> str:
    """How an imported module was really loaded, from its file: "compiled" (.so) or "python"."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", "") or ""
    return COMPILED_MODE if path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) else PYTHON_MODE


def summary() -> str:
    """One phrase for the start line: "core compiled (15 modules)" or "core pure Python (why)"."""
    states = status()
    compiled = [n for n, s in states.items() if s.mode == COMPILED_MODE]
    if len(compiled) == len(states):
        return f"core compiled ({len(compiled)} modules)"
    stale = [s.reason.removeprefix("stale: ") for s in states.values() if s.reason.startswith("stale")]
    if stale:
        why = f"stale: {'; '.join(sorted(set(stale)))}; make ext"
    else:
        why = "; ".join(sorted({s.reason for s in states.values() if s.mode != COMPILED_MODE}))
    if compiled:
        return f"core partly compiled ({len(compiled)} of {len(states)} modules; {why})"
    return f"core pure Python ({why})"
