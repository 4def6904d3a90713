"""The layers of dnsengine keep to their imports (dnsengine/core/__init__.py and the
other packages' docstrings say what each may import)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "dnsengine" / "core"


def _modules(package: Path) -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in package.glob("*.py")
        if path.name != "__init__.py"
    )


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (function-level too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offending(package: str, refused: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        if "tests" in path.relative_to(ROOT).parts:
            continue
        hits = sorted(name for name in _imports(path) if any(name == r or name.startswith(r + ".") for r in refused))
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    return bad


def test_importing_the_whole_core_loads_no_django_and_no_other_layer():
    code = (
        "import importlib, json, sys\n"
        f"for name in {_modules(CORE)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'querylog', 'gloryhole_site') or m.startswith(('dnsengine.runtime', 'dnsengine.blocklists', "
        "'dnsengine.models', 'dnsengine.views', 'dnsengine.services')))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert len(_modules(CORE)) >= 10
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    ("package", "refused"),
    [
        (
            "dnsengine.core",
            ("django", "querylog", "gloryhole_site", "dnsengine.runtime", "dnsengine.blocklists", "dnsengine.models",
             "dnsengine.services", "dnsengine.views", "dnsengine.selectors", "dnsengine.forms"),
        ),
        (
            "dnsengine.blocklists",
            ("dnsengine.runtime", "dnsengine.views", "dnsengine.forms", "dnsengine.core.server",
             "dnsengine.core.resolver", "dnsengine.core.cache", "dnsengine.core.upstream", "dnsengine.core.ioloop"),
        ),
        ("dnsengine.runtime", ("dnsengine.views", "dnsengine.forms", "dnsengine.urls", "querylog.views")),
        ("querylog", ("dnsengine.runtime", "dnsengine.core.server", "dnsengine.core.resolver")),
        (
            "dnsengine.importers",
            ("dnsengine.runtime", "dnsengine.views", "dnsengine.forms", "dnsengine.core.server",
             "dnsengine.core.resolver", "dnsengine.core.upstream", "dnsengine.core.ioloop"),
        ),
    ],
)  # fmt: skip
def test_a_layer_imports_only_what_it_may(package, refused):
    assert _offending(package, refused) == {}


def test_the_check_sees_a_forbidden_import(tmp_path, monkeypatch):
    # The check above must be able to fail: a core module importing Django is caught.
    fake_root = tmp_path
    (fake_root / "dnsengine" / "core").mkdir(parents=True)
    (fake_root / "dnsengine" / "core" / "bad.py").write_text("def f():\n    from django.conf import settings\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)

    bad = _offending("dnsengine.core", ("django",))

    assert bad == {"dnsengine/core/bad.py": ["django.conf", "django.conf.settings"]}
