"""The compiled twin's import switch (dnsengine/core/compiled.py) and its optional build (setup.py, Makefile)."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dnsengine.core import compiled

ROOT = Path(__file__).resolve().parents[2]
SO_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_the_core_runs_in_the_mode_asked_for():
    """GLORYHOLE_NO_EXTENSIONS=1: every listed module is its .py; GLORYHOLE_EXPECT_EXTENSIONS=1 (make test-sqlite
    after a good build): every one is its .so. Python's own finder prefers a .so, so a broken switch fails here."""
    modules = {name: importlib.import_module(name) for name in compiled.COMPILED}
    files = {name: module.__file__ for name, module in modules.items()}
    if os.environ.get("GLORYHOLE_NO_EXTENSIONS") == "1":
        assert {name: Path(f).suffix for name, f in files.items()} == dict.fromkeys(files, ".py")
        assert compiled.summary() == "core pure Python (GLORYHOLE_NO_EXTENSIONS=1)"
        assert not compiled.enabled()
    elif os.environ.get("GLORYHOLE_EXPECT_EXTENSIONS") == "1":
        assert {name: f.endswith(SO_SUFFIX) for name, f in files.items()} == dict.fromkeys(files, True)
        assert compiled.summary() == f"core compiled ({len(files)} modules)"
        assert compiled.enabled()
        assert set(compiled.read_manifest()["modules"]) >= set(compiled.COMPILED)
    # Whatever the mode, what status() reports is what was imported.
    for name, state in compiled.status().items():
        assert state.file == files[name]
        assert state.mode == compiled.loaded_mode(name)
        assert (state.reason == "") == (state.mode == compiled.COMPILED_MODE)


def test_the_lists_name_existing_core_modules():
    for name in compiled.COMPILED:
        assert Path(compiled.source_path(name)).is_file(), name
    assert not set(compiled.COMPILED) & set(compiled.EXTENSION_MODULES)
    assert "dnsengine.core.compiled" not in compiled.COMPILED  # the switch itself always runs as Python


def _tree(tmp_path: Path, *, so: bool = True) -> Path:
    """A package with one plain module and, when so, a file where its .so would be (not a loadable one:
    importing it fails, so a test sees at once whether the switch chose it)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("WHERE = 'python'\n")
    if so:
        (package / f"mod{SO_SUFFIX}").write_bytes(b"not an ELF file")
    return tmp_path


def _finder(root: Path, manifest_modules: dict | None, **kwargs) -> compiled.SwitchFinder:
    manifest = root / "_compiled.json"
    if manifest_modules is not None:
        compiled.write_manifest(manifest_modules, str(manifest))
    return compiled.SwitchFinder(root=str(root), manifest=str(manifest), compiled=("pkg.mod",),
                                 extensions=("pkg.ext",), **kwargs)  # fmt: skip


def _fresh(root: Path) -> dict:
    return {"pkg.mod": {"source": compiled.source_digest(str(root / "pkg" / "mod.py")), "so": f"mod{SO_SUFFIX}"}}


def test_a_so_built_from_the_current_source_is_chosen(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.ENV_DISABLE, raising=False)
    root = _tree(tmp_path)
    spec = _finder(root, _fresh(root)).find_spec("pkg.mod")

    assert isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    assert spec.origin == str(root / "pkg" / f"mod{SO_SUFFIX}")


def test_a_stale_so_is_ignored_and_the_reason_reported(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.ENV_DISABLE, raising=False)
    root = _tree(tmp_path)
    finder = _finder(root, _fresh(root))
    (root / "pkg" / "mod.py").write_text("WHERE = 'python, edited since the build'\n")

    spec = finder.find_spec("pkg.mod")

    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert spec.origin == str(root / "pkg" / "mod.py")
    assert finder.decide("pkg.mod").reason == "stale: mod.py changed since the build"


def test_a_changed_pxd_makes_the_so_stale_too(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.ENV_DISABLE, raising=False)
    root = _tree(tmp_path)
    (root / "pkg" / "mod.pxd").write_text("cdef int x\n")
    finder = _finder(root, _fresh(root))
    (root / "pkg" / "mod.pxd").write_text("cdef long x\n")

    assert finder.decide("pkg.mod").reason == "stale: mod.py changed since the build"


@pytest.mark.parametrize(
    ("manifest", "so", "reason"),
    [
        (None, True, "stale: not in the build's manifest"),
        ({}, True, "stale: not in the build's manifest"),
        ({"pkg.mod": {"source": "0" * 64}}, True, "stale: mod.py changed since the build"),
        (None, False, "not built"),
    ],
)
def test_without_a_matching_manifest_entry_the_python_source_is_used(tmp_path, monkeypatch, manifest, so, reason):
    monkeypatch.delenv(compiled.ENV_DISABLE, raising=False)
    root = _tree(tmp_path, so=so)
    finder = _finder(root, manifest)

    spec = finder.find_spec("pkg.mod")

    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert finder.decide("pkg.mod") == compiled.ModuleStatus("python", reason, str(root / "pkg" / "mod.py"))


def test_no_extensions_forces_the_python_source_over_a_fresh_so(tmp_path, monkeypatch):
    monkeypatch.setenv(compiled.ENV_DISABLE, "1")
    root = _tree(tmp_path)
    finder = _finder(root, _fresh(root))

    assert isinstance(finder.find_spec("pkg.mod").loader, importlib.machinery.SourceFileLoader)
    assert finder.decide("pkg.mod").reason == "GLORYHOLE_NO_EXTENSIONS=1"
    assert finder.find_spec("pkg.other") is None  # modules not listed are left to Python


@pytest.mark.parametrize(
    ("built", "manifest", "reason"), [(False, {}, "not built"), (True, {"pkg.ext": {"source": "0" * 64}}, "stale")]
)
def test_an_extension_only_module_cannot_be_imported_unbuilt_or_stale(tmp_path, monkeypatch, built, manifest, reason):
    monkeypatch.delenv(compiled.ENV_DISABLE, raising=False)
    root = _tree(tmp_path)
    (root / "pkg" / "ext.pyx").write_text("")
    if built:
        (root / "pkg" / f"ext{SO_SUFFIX}").write_bytes(b"")
    finder = _finder(root, manifest)

    with pytest.raises(ModuleNotFoundError, match=reason):
        finder.find_spec("pkg.ext")


@pytest.mark.parametrize("disable", ["1", ""])
def test_an_extension_only_module_built_from_its_source_is_found_whatever_the_switch(tmp_path, monkeypatch, disable):
    """Its callers ask compiled.enabled() first; its own tests load it in the pure run too."""
    monkeypatch.setenv(compiled.ENV_DISABLE, disable)
    root = _tree(tmp_path)
    (root / "pkg" / "ext.pyx").write_text("# cython\n")
    (root / "pkg" / f"ext{SO_SUFFIX}").write_bytes(b"")
    finder = _finder(root, {"pkg.ext": {"source": compiled.source_digest(str(root / "pkg" / "ext.pyx"))}})

    assert isinstance(finder.find_spec("pkg.ext").loader, importlib.machinery.ExtensionFileLoader)
    assert compiled.enabled() is (disable != "1")


def _copy_core(dest: Path, modules: tuple[str, ...] = ("forwarding",)) -> Path:
    """The dnsengine package's first import and a few core modules, in a temporary tree."""
    core = dest / "dnsengine" / "core"
    core.mkdir(parents=True)
    shutil.copy(ROOT / "dnsengine" / "__init__.py", dest / "dnsengine")
    for name in ("__init__", "compiled", *modules):
        shutil.copy(ROOT / "dnsengine" / "core" / f"{name}.py", core)
    return dest


def _imported_from(tree: Path, env: dict[str, str]) -> tuple[str, str]:
    code = (
        "import sys\n"
        "try:\n"
        "    import dnsengine.core.forwarding as m\n"
        "    print(m.__file__)\n"
        "except ImportError as exc:\n"
        "    print('ImportError', exc.path)\n"
        "from dnsengine.core import compiled\n"
        "print(compiled.summary())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != compiled.ENV_DISABLE} | env
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return tuple(done.stdout.splitlines()[:2])


def test_the_package_import_installs_the_switch(tmp_path):
    """A copy of the package with a .so file beside forwarding.py: the real first import decides by the manifest."""
    tree = _copy_core(tmp_path)
    core = tree / "dnsengine" / "core"
    so = core / f"forwarding{SO_SUFFIX}"
    so.write_bytes(b"not an ELF file")
    manifest = {"dnsengine.core.forwarding": {"source": compiled.source_digest(str(core / "forwarding.py")),
                                              "so": so.name}}  # fmt: skip
    compiled.write_manifest(manifest, str(core / "_compiled.json"))

    # Fresh: the .so is what gets loaded (this one cannot load, which proves it was chosen).
    assert _imported_from(tree, {})[0] == f"ImportError {so}"
    assert _imported_from(tree, {compiled.ENV_DISABLE: "1"}) == (
        str(core / "forwarding.py"),
        "core pure Python (GLORYHOLE_NO_EXTENSIONS=1)",
    )
    with open(core / "forwarding.py", "a") as f:
        f.write("# edited after the build\n")
    file, summary = _imported_from(tree, {})
    assert file == str(core / "forwarding.py")
    assert "stale: forwarding.py changed since the build; make ext" in summary


@pytest.mark.integration
def test_the_build_without_a_compiler_succeeds_and_says_why(tmp_path):
    """make's stamp step with CC=/bin/false, in a copy of the tree with one listed module: exit 0, one line why,
    no .so, the engine's modules from their .py."""
    tree = _copy_core(tmp_path / "repo")
    for name in ("Makefile", "setup.py", "requirements.txt"):
        shutil.copy(ROOT / name, tree)
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".runtime").touch()  # the real venv stands in: its python has Cython and setuptools
    done = subprocess.run(
        ["make", "-s", f"VENV={venv}", f"PY={sys.executable}", "CC=/bin/false", f"{venv}/.ext"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "compiled core not built: the C compiler /bin/false cannot compile against Python.h" in done.stderr
    assert "the engine runs as pure Python" in done.stderr
    assert (venv / ".ext").read_text().startswith("not built: ")
    assert not list(tree.rglob(f"*{SO_SUFFIX}"))
    assert not (tree / "dnsengine" / "core" / "_compiled.json").exists()
    assert _imported_from(tree, {}) == (
        str(tree / "dnsengine" / "core" / "forwarding.py"),
        "core pure Python (not built)",
    )


def test_setup_reports_a_missing_compiler(tmp_path):
    env = os.environ | {"CC": str(tmp_path / "no-such-cc")}
    done = subprocess.run([sys.executable, str(ROOT / "setup.py"), "toolchain"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip

    assert done.returncode == 2  # missing: the Makefile installs build-essential with apt-get when root
    assert (
        done.stderr.strip() == f"not built: no C compiler ({tmp_path / 'no-such-cc'}; apt-get install build-essential)"
    )
