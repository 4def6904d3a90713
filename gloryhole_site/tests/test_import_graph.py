"""The project's apps import each other without a cycle, not even one hidden in a function body."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gloryhole_site.testing import ROOT as PROJECT

APPS = ("dnsengine", "querylog", "gloryhole_site")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Every module ``tree`` imports, at any depth but under ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            # `from querylog import rollups` names a module too.
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (tests, test helpers and migrations left out)."""
    paths = [
        path
        for app in APPS
        for path in (PROJECT / app).rglob("*.py")
        if not {"tests", "testing", "migrations"} & set(path.relative_to(PROJECT).parts)
    ]
    modules = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = _imports(ast.parse(path.read_text(), str(path)), package)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_apps_import_each_other_without_a_cycle():
    graph = import_graph()

    assert "querylog.db" in graph["querylog.rollups"]  # the walk sees real imports
    assert "querylog.logger.writer" in graph["querylog.logger.pool"]  # and the package's own
    assert "dnsengine.core.resolver" in graph["dnsengine.runtime.watcher"]  # across the apps' layers
    assert find_cycle(graph) is None


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function():
    module = ast.parse("def write():\n    from querylog.logger.writer import QueryLogWriter\n")
    graph = import_graph()
    graph["querylog.rollups"] |= _imports(module, "querylog") & set(graph)

    assert find_cycle(graph) is not None


@pytest.mark.parametrize("first", ["querylog.rollups", "querylog.db"])
def test_rollups_and_the_database_helpers_import_first_in_a_fresh_process(first):
    # A cycle shows at run time as an ImportError (a partly initialised module)
    # depending on which module is imported first: try both orders.
    other = "querylog.db" if first == "querylog.rollups" else "querylog.rollups"
    code = f"import django; django.setup(); import {first}; import {other}; print('ok')"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "gloryhole_site.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
