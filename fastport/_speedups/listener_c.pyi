"""Stub for the compiled FrameListener; it mirrors fastport._speedups.listener_py."""

from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSListener, WSTransport

__all__ = ["FrameListener"]

class FrameListener(WSListener):
    heard: bool
    fragments: list[bytes] | None
    receiver: Callable[[Any, bytes], None] | None
    target: Any
    def __init__(self) -> None: ...
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None: ...
    def on_other_frame(self, transport: WSTransport, frame: WSFrame) -> None: ...
