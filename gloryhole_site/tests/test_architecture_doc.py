"""docs/architecture.md keeps up with the tree: every module and every thread is named."""

from __future__ import annotations

import re

from gloryhole_site.testing import ROOT

DOC = ROOT / "docs" / "architecture.md"
PACKAGES = [
    "dnsengine",
    "dnsengine/core",
    "dnsengine/runtime",
    "dnsengine/blocklists",
    "dnsengine/services",
    "dnsengine/views",
    "querylog",
    "querylog/logger",
    "gloryhole_site",
]
UNLISTED = {"__init__", "apps", "wsgi", "settings"}


def modules_missing_from(doc: str) -> list[str]:
    named = set(re.findall(r"`([\w/]+)`", doc)) | {
        part for names in re.findall(r"`([\w/]+(?:/\w+)*)`", doc) for part in names.split("/")
    }
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            if path.stem not in UNLISTED and path.stem not in named:
                missing.append(f"{package}/{path.name}")
    return missing


def thread_names_in_code() -> set[str]:
    names = set()
    for path in list((ROOT / "dnsengine").rglob("*.py")) + list((ROOT / "querylog").rglob("*.py")):
        if "tests" in path.parts:
            continue
        for name in re.findall(r'Thread\(.*\bname=f?"([^"]+)"', path.read_text()):
            names.add(re.sub(r"\{[^}]*\}", "N", name))
    names.update(re.findall(r'IoLoop\("([^"]+)"\)', (ROOT / "dnsengine" / "runtime" / "engine.py").read_text()))
    return names


def test_every_module_is_in_the_module_map():
    assert modules_missing_from(DOC.read_text()) == []


def test_the_check_finds_a_module_the_map_leaves_out():
    doc = DOC.read_text().replace("`watcher`", "`(left out)`")

    assert "dnsengine/runtime/watcher.py" in modules_missing_from(doc)


def test_every_thread_rundns_starts_is_listed():
    doc = DOC.read_text()
    names = thread_names_in_code()

    assert {"dns-io", "dns-tcp", "config-watcher", "querylog-writer-N"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in doc and not (n.endswith("-N") and f"`{n[:-2]}" in doc))
    assert missing == []
