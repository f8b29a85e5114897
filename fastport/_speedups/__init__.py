"""The switch between fastport's compiled hot path and its pure-Python twins.

This is the only module that knows which twin is live; everything outside tests and benchmarks
imports from here.

- ``FASTPORT_NO_EXTENSIONS`` set to any non-empty value, or an interpreter other than CPython,
  selects the ``_py`` twin of every module.
- Otherwise each module (``trie``, ``timerwheel``, ``outbox``, ``fanout``, ``listener``) is
  selected on its own: its compiled ``_c`` twin is imported, and if that fails (no compiler at
  install time: ``ImportError``; a ``listener_c`` built against another picows than the installed
  one: ``ValueError``, a binary layout mismatch) that module alone falls back to its ``_py`` twin,
  with a ``RuntimeWarning`` naming it. Tests turn warnings into errors, so a broken build cannot
  pass as a compiled one.
- The compiled twins never ``cimport`` each other, so any mix is valid: ``fanout_c`` sends
  through ``sink.send`` as an ordinary call and works with either ``Outbox``.
- Type checkers always see the ``_py`` twins, the reference the ``.pyi`` stubs mirror.

``IMPLEMENTATIONS`` maps each module to the twin it runs (``"compiled"`` or ``"python"``);
``IMPLEMENTATION`` sums it up for the startup log and the stats endpoint: ``"compiled"`` or
``"python"`` when every module runs that twin, else ``"mixed"``.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Final

__all__ = [
    "IMPLEMENTATION",
    "IMPLEMENTATIONS",
    "MAX_DELAY_MS",
    "NO_EXTENSIONS",
    "Arm",
    "FanOutConnection",
    "FanOutMessage",
    "FanOutSink",
    "FanOutTarget",
    "Flusher",
    "FrameListener",
    "Inflight",
    "Outbox",
    "TimerWheel",
    "TopicTrie",
    "fan_out",
    "send_now",
    "track",
]

NO_EXTENSIONS: Final[bool] = bool(os.environ.get("FASTPORT_NO_EXTENSIONS")) or sys.implementation.name != "cpython"

_implementations: dict[str, str] = {}


def _twin(module: str) -> ModuleType:
    """Import the twin of ``module`` to run, and record which one it is."""
    if not NO_EXTENSIONS:
        try:
            twin = importlib.import_module(f"{__name__}.{module}_c")
        except (ImportError, ValueError) as exc:  # ValueError: built against another picows (binary layout)
            warnings.warn(
                f"fastport._speedups.{module}: compiled twin unavailable, using pure Python: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            _implementations[module] = "compiled"
            return twin
    _implementations[module] = "python"
    return importlib.import_module(f"{__name__}.{module}_py")


if TYPE_CHECKING:
    from .fanout_py import (
        Arm,
        FanOutConnection,
        FanOutMessage,
        FanOutSink,
        FanOutTarget,
        Inflight,
        fan_out,
        send_now,
        track,
    )
    from .listener_py import FrameListener
    from .outbox_py import Flusher, Outbox
    from .timerwheel_py import MAX_DELAY_MS, TimerWheel
    from .trie_py import TopicTrie
else:
    TopicTrie = _twin("trie").TopicTrie
    _timerwheel = _twin("timerwheel")
    MAX_DELAY_MS = _timerwheel.MAX_DELAY_MS
    TimerWheel = _timerwheel.TimerWheel
    _outbox = _twin("outbox")
    Flusher = _outbox.Flusher
    Outbox = _outbox.Outbox
    _fanout = _twin("fanout")
    Arm = _fanout.Arm
    FanOutConnection = _fanout.FanOutConnection
    FanOutMessage = _fanout.FanOutMessage
    FanOutSink = _fanout.FanOutSink
    FanOutTarget = _fanout.FanOutTarget
    Inflight = _fanout.Inflight
    fan_out = _fanout.fan_out
    send_now = _fanout.send_now
    track = _fanout.track
    FrameListener = _twin("listener").FrameListener
    del _timerwheel, _outbox, _fanout

IMPLEMENTATIONS: Final[Mapping[str, str]] = MappingProxyType(_implementations)
_kinds = set(_implementations.values())
IMPLEMENTATION: Final[str] = _kinds.pop() if len(_kinds) == 1 else "mixed"
del _kinds
