"""Compatibility shim: write coalescing now lives in ``fastport._speedups`` (``fanout_py``/``fanout_c``).

``Flusher(loop)`` keeps the old call shape for callers that still pass an event loop; new code
builds ``fastport._speedups.Flusher(loop.call_soon)`` directly. This module goes away once its
last importer (``fastport.server.app``) does that.
"""

from __future__ import annotations

import asyncio

from fastport._speedups import Flusher as _Flusher
from fastport._speedups import Outbox

__all__ = ["Flusher", "Outbox"]


def Flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    """A ``fastport._speedups.Flusher`` that schedules its flushes with ``loop.call_soon``."""
    return _Flusher(loop.call_soon)
