"""Every module of the package imports first, alone, in a fresh interpreter; every ``__all__`` names what exists.

The rest of the suite imports modules in the usual order, so an import cycle that works only when entered
from one side, or a name taken from a module still half initialised, passes there and fails the user whose
first import is the other module. Here each module is the first import of an interpreter of its own; the
interpreters run in parallel, a few at a time.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import fastport

NO_EXTENSIONS = bool(os.environ.get("FASTPORT_NO_EXTENSIONS"))


def _is_compiled(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


#: The package and every module in it. ``fastport.__main__`` runs the command line when imported, so it
#: is imported the way it is meant to be, by ``python -m fastport --help``.
MODULES = ["fastport", *(module.name for module in pkgutil.walk_packages(fastport.__path__, "fastport."))]
#: The compiled twins: like the ``compiled`` tests of tests/speedups, skipped under FASTPORT_NO_EXTENSIONS.
COMPILED = {name for name in MODULES if _is_compiled(name)}
LOADED = [name for name in MODULES if not (NO_EXTENSIONS and name in COMPILED)]


def _first_import(name: str) -> subprocess.CompletedProcess[str]:
    how = ["-m", "fastport", "--help"] if name == "fastport.__main__" else ["-c", f"import {name}"]
    # -W error: a warning at import (a compiled twin that does not load, a deprecation) fails as the suite would.
    return subprocess.run(
        [sys.executable, "-W", "error", *how], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def first_imports() -> dict[str, subprocess.CompletedProcess[str]]:
    """The outcome of importing each module first in an interpreter of its own, all run at once."""
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        return dict(zip(LOADED, pool.map(_first_import, LOADED), strict=True))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.compiled, pytest.mark.skipif(NO_EXTENSIONS, reason="FASTPORT_NO_EXTENSIONS is set")],
        )
        if name in COMPILED
        else name
        for name in MODULES
    ],
)
def test_module_imports_first_in_a_fresh_interpreter(
    name: str, first_imports: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    result = first_imports[name]
    assert result.returncode == 0, result.stderr


def test_every_name_in_every_all_exists() -> None:
    missing: dict[str, list[str]] = {}
    checked = set()
    for name in LOADED:
        if name == "fastport.__main__":
            continue
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            continue
        checked.add(name)
        assert len(set(exported)) == len(exported), f"{name}.__all__ names something twice"
        absent = [attribute for attribute in exported if not hasattr(module, attribute)]
        if absent:
            missing[name] = absent
    assert missing == {}
    assert {"fastport", "fastport.client", "fastport._speedups"} <= checked  # the walk found the package
