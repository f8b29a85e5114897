"""The ``speedups`` fixture: each test runs once per twin, compiled and pure Python.

``compiled`` skips only when ``FASTPORT_NO_EXTENSIONS`` is set; otherwise a compiled module that
fails to import is a test error, so a broken build can never quietly test Python twice.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fastport._speedups import fanout_py, listener_py, outbox_py, timerwheel_py, trie_py

NO_EXTENSIONS = bool(os.environ.get("FASTPORT_NO_EXTENSIONS"))
MODULES = ("trie", "timerwheel", "outbox", "fanout", "listener")


class Twin:
    """A namespace of the public names of one twin, typed as the ``_py`` reference twin (the ``.pyi`` stubs mirror it).

    Only the names the tests use are declared. A generic class is declared with ``Any`` for its parameter:
    each test picks what it stores. The functions are declared as static methods of the reference
    functions, so they keep their generic signatures.
    """

    TopicTrie: type[trie_py.TopicTrie[Any]]
    MAX_DELAY_MS: int
    TimerWheel: type[timerwheel_py.TimerWheel]
    OP_TEXT: int
    OP_BINARY: int
    Flusher: type[outbox_py.Flusher]
    Outbox: type[outbox_py.Outbox]
    Inflight: type[fanout_py.Inflight[Any]]
    FrameListener: type[listener_py.FrameListener]
    if TYPE_CHECKING:
        fan_out = staticmethod(fanout_py.fan_out)
        send_now = staticmethod(fanout_py.send_now)
        track = staticmethod(fanout_py.track)

    def __init__(self, **names: object) -> None:
        vars(self).update(names)


def load_twin(suffix: str) -> Twin:
    """Return a namespace of the public names of every ``_speedups`` module ending in suffix."""
    names: dict[str, object] = {}
    for module in MODULES:
        twin: ModuleType = importlib.import_module(f"fastport._speedups.{module}_{suffix}")
        names.update((name, getattr(twin, name)) for name in twin.__all__)
    return Twin(**names)


def load_compiled() -> Twin:
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
def speedups(request: pytest.FixtureRequest) -> Twin:
    """The public names of one twin: ``TopicTrie``, ``TimerWheel``, ``MAX_DELAY_MS``, ``Outbox``, ...."""
    if request.param == "c":
        return load_compiled()
    return load_twin("py")


@pytest.fixture(scope="session")
def twins() -> tuple[Twin, Twin]:
    """Both twins at once, (compiled, python), for tests that run them side by side."""
    return load_compiled(), load_twin("py")
