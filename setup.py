"""Builds the compiled twin of the DNS core in place: ``python setup.py build_ext --inplace`` (``make ext``).

Cython compiles the listed ``.py`` files themselves (``dnsengine/core/compiled.py`` has the
lists), so each ``.so`` lands beside the source it was built from and the ``.py`` stays the
reference; the generated C goes under ``build/``. After a build the manifest records each
module's source SHA-256, which the import switch compares before it loads a ``.so``.

The build is optional. When it cannot happen (Cython missing, no C compiler or Python
headers, a compile error) this exits non-zero with ``not built: <why>`` as its last line and
the engine runs as pure Python. ``python setup.py toolchain`` only checks the compiler and
headers, for the Makefile's apt-get step: exit 2 when one is missing (apt-get can install
it), 1 when the compiler is there but cannot compile against Python.h.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.join("build", "cython")


def load_lists():
    # By path: importing the dnsengine package would install the switch in this process too.
    spec = importlib.util.spec_from_file_location(
        "_gloryhole_compiled", os.path.join(ROOT, "dnsengine/core/compiled.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def toolchain_problem() -> str | None:
    """Why no extension can be compiled here, or None: the C compiler compiles a file including Python.h.

    A reason starting "no " is something missing that apt-get can install."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc") or ["cc"]
    if shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0]}; apt-get install build-essential)"
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h; apt-get install python3-dev)"
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("#include <Python.h>\nint probe(void) { return 0; }\n")
        try:
            done = subprocess.run([*cc, f"-I{include}", "-c", source, "-o", os.path.join(tmp, "probe.o")],
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the C compiler {cc[0]} does not run ({exc})"
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            return f"the C compiler {cc[0]} cannot compile against Python.h ({last[:160]})"
    return None


def compile_error(message: str) -> str:
    """A failed compiler command in a few words: which compiler, which file."""
    failed = re.search(r"Command '\['([^']+)'.*'-c', '([^']+)'", message)
    if failed:
        return f"{failed.group(1)} failed on {failed.group(2)}"
    return message if len(message) < 200 else message[:200] + "..."


def not_built(why: str) -> None:
    print(f"not built: {why}", file=sys.stderr)
    sys.exit(2 if why.startswith("no ") else 1)


def main() -> None:
    os.chdir(ROOT)
    problem = toolchain_problem()
    if sys.argv[1:] == ["toolchain"]:
        if problem:
            not_built(problem)
        return
    if problem:
        not_built(problem)
    if importlib.util.find_spec("Cython") is None:
        not_built("Cython is not installed (pip install -r requirements.txt)")

    import Cython
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    from setuptools.command.build_ext import build_ext

    lists = load_lists()
    sources = {name: lists.source_path(name) for name in lists.COMPILED}
    sources.update({name: lists.source_path(name, ".pyx") for name in lists.EXTENSION_MODULES})
    sources = {name: path for name, path in sources.items() if os.path.exists(path)}  # a missing .pyx: skipped
    # Hashed before compiling: the manifest must describe what was compiled, even if a file changes meanwhile.
    digests = {name: lists.source_digest(path) for name, path in sources.items()}
    extensions = [Extension(name, [os.path.relpath(path, ROOT)]) for name, path in sources.items()]
    # Plain annotations stay hints, as in Python: with annotation typing on, Cython would turn
    # `data: bytes` into an exact type check that refuses the bytearray the pure code accepts.
    # Typed code opts in where it wants C types: @cython.annotation_typing(True), @cython.locals,
    # cython.declare or a .pxd beside the module.
    directives = {"language_level": "3", "annotation_typing": False}
    # cythonize redoes a .c only when its source is newer, so other directives (or Cython) must redo them all.
    recorded = os.path.join(BUILD_DIR, "directives.json")
    settings = json.dumps({"directives": directives, "cython": Cython.__version__}, sort_keys=True)
    try:
        with open(recorded) as f:
            force = f.read() != settings
    except OSError:
        force = True
    try:
        # The .pyx modules are written for Cython: their annotations keep Cython's meaning.
        ext_modules = []
        for group, group_directives in (
            ([e for e in extensions if e.sources[0].endswith(".py")], directives),
            ([e for e in extensions if e.sources[0].endswith(".pyx")], {"language_level": "3"}),
        ):
            if group:
                ext_modules += cythonize(group, build_dir=BUILD_DIR, force=force, quiet=True,
                                         compiler_directives=group_directives)  # fmt: skip
        os.makedirs(BUILD_DIR, exist_ok=True)
        with open(recorded, "w") as f:
            f.write(settings)
    except Exception as exc:  # Cython reports the file and line above this
        not_built(f"Cython could not compile the core ({type(exc).__name__}: {exc})")

    class BuildAndRecord(build_ext):
        def run(self) -> None:
            super().run()
            if not self.inplace:
                return
            built = {}
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                built[ext.name] = {"source": digests[ext.name], "so": os.path.basename(path)}
            lists.write_manifest(built, os.path.join(ROOT, os.path.relpath(lists.MANIFEST, lists.ROOT)))

    try:
        setup(
            name="glory-hole-core",
            ext_modules=ext_modules,
            cmdclass={"build_ext": BuildAndRecord},
            zip_safe=False,
        )
    except SystemExit as exc:
        if exc.code not in (None, 0):
            not_built(f"the C build failed ({compile_error(str(exc.code))})")
        raise


if __name__ == "__main__":
    main()
