"""Stub for the compiled Outbox and Flusher; it mirrors fastport._speedups.fanout_py."""

from collections.abc import Callable, Mapping
from typing import Any, Final, final

__all__ = ["OP_BINARY", "OP_TEXT", "Flusher", "Inflight", "Outbox", "fan_out"]

OP_TEXT: Final[int]
OP_BINARY: Final[int]

@final
class Outbox:
    def __init__(self, write: Callable[[bytes], object], flusher: Flusher) -> None: ...
    def text(self, payload: bytes) -> None: ...
    def binary(self, payload: bytes) -> None: ...
    def flush(self) -> None: ...
    def discard(self) -> None: ...
    def pending(self) -> int: ...

@final
class Flusher:
    def __init__(self, call_soon: Callable[[Callable[[], None]], object]) -> None: ...
    def mark(self, outbox: Outbox) -> None: ...
    def flush(self) -> None: ...
    def __len__(self) -> int: ...

@final
class Inflight:
    message: Any
    attempts: int
    due_ms: int
    def __init__(self, message: Any, attempts: int, due_ms: int) -> None: ...

def fan_out(
    targets: Mapping[Any, int],
    message: Any,
    publisher: Any,
    due_ms: int,
    window: int,
    durable_aside: bool,
    arm: Callable[[int, Any], int],
) -> tuple[int, list[tuple[Any, int]] | None]: ...
