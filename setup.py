"""Declare fastport's optional compiled extensions; all other metadata lives in pyproject.toml.

- ``FASTPORT_NO_EXTENSIONS`` set to any non-empty value, or Cython not importable: no extensions,
  a pure-Python build.
- Otherwise each ``fastport/_speedups/*_c.pyx`` becomes an ``optional`` extension, so a machine
  without a C compiler still installs a working pure-Python package (``fastport._speedups`` then
  falls back to the ``_py`` twins).
- ``FASTPORT_CYTHON_ANNOTATE=1`` also writes Cython's annotated ``.html`` next to each ``.pyx``.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

_MODULES = ("trie_c", "timerwheel_c", "outbox_c", "fanout_c", "listener_c")
_DIRECTIVES = {"language_level": 3, "embedsignature": True}


def _ext_modules() -> list[Extension]:
    if os.environ.get("FASTPORT_NO_EXTENSIONS"):
        print("fastport: pure-Python build (FASTPORT_NO_EXTENSIONS is set)", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("fastport: pure-Python build (Cython is not importable)", file=sys.stderr)
        return []
    extensions = [
        Extension(
            f"fastport._speedups.{module}",
            [f"fastport/_speedups/{module}.pyx"],
            optional=True,
        )
        for module in _MODULES
    ]
    annotate = os.environ.get("FASTPORT_CYTHON_ANNOTATE") == "1"
    # An annotate build regenerates the C even when the .pyx is unchanged, to write the .html.
    compiled = cythonize(extensions, compiler_directives=_DIRECTIVES, annotate=annotate, force=annotate)
    # cythonize copies the extensions; keep them optional so a failed compile is not fatal.
    for extension in compiled:
        extension.optional = True
    names = ", ".join(extension.name for extension in compiled)
    print(f"fastport: compiled build with optional extensions: {names}", file=sys.stderr)
    return compiled


setup(ext_modules=_ext_modules())
