"""The switch between fastport's compiled hot path and its pure-Python twins.

This is the only module that knows which twin is live; everything outside tests and benchmarks
imports from here.

- ``FASTPORT_NO_EXTENSIONS`` set to any non-empty value, or an interpreter other than CPython,
  selects the ``_py`` twins.
- Otherwise the compiled ``_c`` twins are imported. If that fails (no compiler at install time,
  or a ``listener_c`` built against another picows than the installed one), the ``_py`` twins
  are used and a ``RuntimeWarning`` says so; tests turn warnings into errors, so a broken build
  cannot pass as a compiled one.
- Type checkers always see the ``_py`` twins, the reference the ``.pyi`` stubs mirror.

``IMPLEMENTATION`` tells which twin is live (``"compiled"`` or ``"python"``), for the startup log
and the stats endpoint.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING, Final

__all__ = [
    "IMPLEMENTATION",
    "MAX_DELAY_MS",
    "NO_EXTENSIONS",
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

if TYPE_CHECKING or NO_EXTENSIONS:
    from .fanout_py import Flusher, Inflight, Outbox, fan_out, send_now, track
    from .listener_py import FrameListener
    from .timerwheel_py import MAX_DELAY_MS, TimerWheel
    from .trie_py import TopicTrie

    IMPLEMENTATION: Final[str] = "python"
else:
    try:
        from .fanout_c import Flusher, Inflight, Outbox, fan_out
        from .listener_c import FrameListener
        from .timerwheel_c import MAX_DELAY_MS, TimerWheel
        from .trie_c import TopicTrie
    except (ImportError, ValueError) as exc:  # ValueError: built against another picows (binary layout)
        warnings.warn(
            f"fastport compiled extensions unavailable, using pure Python: {exc}",
            RuntimeWarning,
            stacklevel=2,
        )
        from .fanout_py import Flusher, Inflight, Outbox, fan_out, send_now, track
        from .listener_py import FrameListener
        from .timerwheel_py import MAX_DELAY_MS, TimerWheel
        from .trie_py import TopicTrie

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "compiled"
