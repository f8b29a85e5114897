"""The ``speedups`` fixture: each test runs once per twin, compiled and pure Python.

``compiled`` skips only when ``FASTPORT_NO_EXTENSIONS`` is set; otherwise a compiled module that
fails to import is a test error, so a broken build can never quietly test Python twice.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType, SimpleNamespace

import pytest

NO_EXTENSIONS = bool(os.environ.get("FASTPORT_NO_EXTENSIONS"))
MODULES = ("trie", "timerwheel", "outbox", "fanout", "listener")


def load_twin(suffix: str) -> SimpleNamespace:
    """Return a namespace of the public names of every ``_speedups`` module ending in suffix."""
    names: dict[str, object] = {}
    for module in MODULES:
        twin: ModuleType = importlib.import_module(f"fastport._speedups.{module}_{suffix}")
        names.update((name, getattr(twin, name)) for name in twin.__all__)
    return SimpleNamespace(**names)


def load_compiled() -> SimpleNamespace:
    """Load the compiled twins, skipping under FASTPORT_NO_EXTENSIONS and failing on ImportError."""
    if NO_EXTENSIONS:
        pytest.skip("FASTPORT_NO_EXTENSIONS is set")
    try:
        return load_twin("c")
    except ImportError as exc:
        pytest.fail(f"compiled speedups do not import (broken build?): {exc}")


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("c", id="compiled", marks=pytest.mark.compiled),
        pytest.param("py", id="python"),
    ],
)
def speedups(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The public names of one twin: ``TopicTrie``, ``TimerWheel``, ``MAX_DELAY_MS``, ``Outbox``, ...."""
    if request.param == "c":
        return load_compiled()
    return load_twin("py")


@pytest.fixture(scope="session")
def twins() -> tuple[SimpleNamespace, SimpleNamespace]:
    """Both twins at once, (compiled, python), for tests that run them side by side."""
    return load_compiled(), load_twin("py")
