"""Settings: one definition per name, one default per knob, and the README lists each with that default.

Each rule is a small function over source text, tried here on a bad example first
(so a rule that can no longer fail shows up as a failing test), then on the repository.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gloryhole_site.dns_env import DNS_SETTINGS
from querylog.logger.config import QUERY_LOG_SETTINGS, ROLLUP_RETENTION_DAYS

# Rows settings.py reads through a table rather than an env_*() call of its own.
TABLE_SETTINGS = (*QUERY_LOG_SETTINGS, *DNS_SETTINGS, ROLLUP_RETENTION_DAYS)

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "gloryhole_site" / "settings.py"
README = ROOT / "README.md"

# Directories that hold no project code.
_SKIPPED_DIRS = {"node_modules", "staticfiles", "data", "__pycache__"}


def _module_level_statements(body: list[ast.stmt]):
    """Statements run at import: the module's own and those inside its top-level if/try blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level_statements(node.body)
            yield from _module_level_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_statements(block)


def _bound_names(targets):
    """Names an assignment binds (`X`, `X, Y`), not those it only indexes (`D["k"]`)."""
    for target in targets:
        if isinstance(target, ast.Name):
            yield target.id
        elif isinstance(target, (ast.Tuple, ast.List)):
            yield from _bound_names(target.elts)
        elif isinstance(target, ast.Starred):
            yield from _bound_names([target.value])


def names_assigned_twice(source: str) -> list[str]:
    """Names bound by more than one module-level assignment."""
    seen: dict[str, int] = {}
    for node in _module_level_statements(ast.parse(source).body):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        else:
            continue
        for name in _bound_names(targets):
            seen[name] = seen.get(name, 0) + 1
    return sorted(name for name, count in seen.items() if count > 1)


def getattr_setting_defaults(source: str) -> list[str]:
    """`getattr(x, "GLORYHOLE_…", default)` calls: a second default beside settings.py's."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 3
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value.startswith("GLORYHOLE_")
        ):
            found.append(f"line {node.lineno}: {node.args[1].value}")
    return found


_ENV_READERS = re.compile(r"env_\w+|database_from_url")


def environment_names_read(source: str) -> set[str]:
    """Variables settings.py reads: the first argument of env_*() and os.environ.get()."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        if isinstance(func, ast.Name):
            reader = _ENV_READERS.fullmatch(func.id)
        elif isinstance(func, ast.Attribute):
            reader = func.attr == "get" and ast.unparse(func.value) == "os.environ"
        else:
            reader = False
        first = node.args[0]
        if reader and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def readme_configuration_rows(markdown: str) -> dict[str, tuple[str, str]]:
    """{variable: (default, meaning)} from the tables of the README's Configuration section."""
    match = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", markdown, flags=re.M | re.S)
    if match is None:
        return {}
    rows = {}
    for line in match.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or set(cells[0]) <= {"-", " ", ":"}:
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        # "`A` / `B` | `1` / `2`": one default each.
        defaults = [part.strip() for part in cells[1].split(" / ")]
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        for name, default in zip(names, defaults, strict=True):
            rows[name] = (default, cells[2])
    return rows


def readme_gaps(names: set[str], markdown: str) -> list[str]:
    """Variables without a README row of their own that gives a default and a meaning."""
    rows = readme_configuration_rows(markdown)
    return sorted(name for name in names if name not in rows or not all(rows[name]))


def literal_defaults(source: str) -> dict[str, object]:
    """{variable: default} for the env_*() calls whose default is a literal (or arithmetic on literals)."""
    defaults = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("env_"):
            if len(node.args) < 2 or not isinstance(node.args[0], ast.Constant):
                continue
            try:
                defaults[node.args[0].value] = _literal(node.args[1])
            except ValueError:
                continue  # computed from a path or another setting: the README says it in words
    return defaults


def _literal(node: ast.expr) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.LShift, ast.Add)):
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(node.op, ast.Mult):
            return left * right
        return left << right if isinstance(node.op, ast.LShift) else left + right
    raise ValueError(ast.unparse(node))


def _shown_as(value: object) -> str:
    """How the README writes a default: booleans as 0/1, whole floats without ".0"."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def readme_default_mismatches(defaults: dict[str, object], markdown: str, meant: dict[str, str]) -> list[str]:
    """Variables whose README default is not settings.py's (`meant`: a README wording for an empty one)."""
    rows = readme_configuration_rows(markdown)
    wrong = []
    for name, value in sorted(defaults.items()):
        if name not in rows:
            continue  # readme_gaps reports it
        cell = rows[name][0]
        span = re.match(r"`([^`]*)`", cell)
        if name in meant:
            ok = cell.startswith(meant[name])
        elif value == "":
            ok = cell.startswith("empty")
        elif span is None:
            ok = False
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = re.fullmatch(r"-?[0-9.]+", span.group(1)) is not None and float(span.group(1)) == value
        else:
            ok = span.group(1) == _shown_as(value)
        if not ok:
            wrong.append(f"{name}: settings.py {value!r}, README {cell!r}")
    return wrong


# An empty GLORYHOLE_ENGINE_NAME means "hostname:port" (dnsengine/runtime/config.py). A privacy
# setting left unset (None) means the value saved on /settings/privacy/, whose default is the model's.
_README_WORDING = {"GLORYHOLE_ENGINE_NAME": "`hostname:port`"} | {
    name: "unset"
    for name in (
        "GLORYHOLE_PRIVACY_LEVEL", "GLORYHOLE_ANONYMIZE_CLIENTS", "GLORYHOLE_ANONYMIZE_V4_PREFIX",
        "GLORYHOLE_ANONYMIZE_V6_PREFIX", "GLORYHOLE_DONT_LOG_CLIENTS", "GLORYHOLE_DONT_LOG_DOMAINS",
        "GLORYHOLE_LOG_BLOCKED_ONLY",
    )
}  # fmt: skip


# --- Each rule on a bad example -------------------------------------------------------


def test_it_finds_a_name_assigned_twice():
    source = 'LOGIN_URL = "admin:login"\nDEBUG = False\nif DEBUG:\n    LOGIN_URL = "login"\n'
    assert names_assigned_twice(source) == ["LOGIN_URL"]


def test_it_counts_unpacked_names_but_not_functions_or_subscripts():
    source = 'def f():\n    X = 1\nX = 2\nD = {}\nD["k"] = 1\nA, (B, *C) = 1, (2, 3)\nC = 4\n'
    assert names_assigned_twice(source) == ["C"]


def test_it_finds_a_getattr_that_repeats_a_default():
    source = 'x = getattr(settings, "GLORYHOLE_API_TOKEN", "")\ny = getattr(settings, "GLORYHOLE_API_TOKEN")\n'
    assert getattr_setting_defaults(source) == ["line 1: GLORYHOLE_API_TOKEN"]


def test_it_reads_the_variable_names_settings_reads():
    source = 'A = env_int("GLORYHOLE_A", 1)\nB = os.environ.get("SECRET_KEY")\nC = other("GLORYHOLE_C")\n'
    assert environment_names_read(source) == {"GLORYHOLE_A", "SECRET_KEY"}


def test_it_finds_a_variable_missing_from_the_readme():
    markdown = (
        "## Configuration\n\n| Variable | Default | Meaning |\n| --- | --- | --- |\n"
        "| `GLORYHOLE_A` / `GLORYHOLE_B` | `1` / `2` | Both. |\n"
        "| `GLORYHOLE_C_*` | see docs | Several. |\n"
        "| `GLORYHOLE_D` | | No default. |\n"
        "\n## Benchmarks\n\n| `GLORYHOLE_E` | `1` | Not in the configuration section. |\n"
    )
    names = {"GLORYHOLE_A", "GLORYHOLE_B", "GLORYHOLE_C_X", "GLORYHOLE_D", "GLORYHOLE_E"}
    assert readme_gaps(names, markdown) == ["GLORYHOLE_C_X", "GLORYHOLE_D", "GLORYHOLE_E"]


def test_it_finds_a_readme_default_that_differs_from_settings():
    source = (
        'A = env_int("A", 64 << 20)\nB = env_bool("B", True)\nC = env_float("C", 2.0)\n'
        'D = env_str("D", "")\nE = env_str("E", str(BASE_DIR))\nF = env_str("F", "")\n'
    )
    markdown = (
        "## Configuration\n\n| Variable | Default | Meaning |\n| --- | --- | --- |\n"
        "| `A` / `B` | `67108864` (64 MiB) / `0` | B differs. |\n"
        "| `C` | `2.5` | Differs. |\n| `D` | empty | Same. |\n| `E` | `anything` | Computed. |\n"
        "| `F` | `host` | Worded. |\n"
    )
    defaults = literal_defaults(source)
    assert defaults == {"A": 64 << 20, "B": True, "C": 2.0, "D": "", "F": ""}
    assert readme_default_mismatches(defaults, markdown, {"F": "`host`"}) == [
        "B: settings.py True, README '`0`'",
        "C: settings.py 2.0, README '`2.5`'",
    ]


# --- The repository -------------------------------------------------------------------


def test_settings_assigns_each_name_once():
    assert names_assigned_twice(SETTINGS.read_text()) == []


def _project_python_files():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if any(part.startswith(".") or part in _SKIPPED_DIRS for part in parts[:-1]):
            continue
        yield path


def test_no_code_repeats_a_settings_default():
    found = {}
    for path in _project_python_files():
        relative = path.relative_to(ROOT).as_posix()
        hits = getattr_setting_defaults(path.read_text(encoding="utf-8"))
        if hits:
            found[relative] = hits
    # settings.py holds each default; code reads settings.GLORYHOLE_X (tests use override_settings).
    assert found == {}


def test_the_scan_covers_the_apps():
    scanned = {path.relative_to(ROOT).as_posix() for path in _project_python_files()}
    assert {"dnsengine/runtime/heartbeat.py", "querylog/views.py", "gloryhole_site/settings.py"} <= scanned


@pytest.fixture(scope="module")
def names_read_by_settings() -> set[str]:
    # The query log's and the live DNS settings' rows are read in settings.py through their
    # tables (querylog/logger/config.py, gloryhole_site/dns_env.py).
    names = environment_names_read(SETTINGS.read_text()) | {s.name for s in TABLE_SETTINGS}
    # A parse that found nothing would make the README check pass vacuously.
    assert {"GLORYHOLE_DNS_PORT", "GLORYHOLE_QUERY_LOG_BUFFER", "GLORYHOLE_UPSTREAMS", "SECRET_KEY",
            "DATABASE_URL"} <= names  # fmt: skip
    return names


def test_readme_lists_every_variable_settings_reads(names_read_by_settings):
    assert readme_gaps(names_read_by_settings, README.read_text(encoding="utf-8")) == []


def test_readme_defaults_are_the_settings_defaults():
    defaults = literal_defaults(SETTINGS.read_text()) | {s.name: s.default for s in TABLE_SETTINGS}
    assert defaults["GLORYHOLE_CACHE_MAX_BYTES"] == 64 << 20 and defaults["GLORYHOLE_QUERY_LOG_ENABLED"] is True
    assert defaults["GLORYHOLE_BLOCK_TTL"] == 10 and defaults["GLORYHOLE_ROLLUP_RETENTION_DAYS"] == 365
    assert readme_default_mismatches(defaults, README.read_text(encoding="utf-8"), _README_WORDING) == []
