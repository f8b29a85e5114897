"""Stub for the compiled fan-out; it mirrors fastport._speedups.fanout_py, whose Protocols and Arm it re-exports."""

from collections.abc import Mapping
from typing import Any, Generic, TypeVar, final

from fastport._speedups.fanout_py import Arm as Arm
from fastport._speedups.fanout_py import FanOutConnection as FanOutConnection
from fastport._speedups.fanout_py import FanOutMessage as FanOutMessage
from fastport._speedups.fanout_py import FanOutSink as FanOutSink
from fastport._speedups.fanout_py import FanOutTarget as FanOutTarget

__all__ = [
    "Arm",
    "FanOutConnection",
    "FanOutMessage",
    "FanOutSink",
    "FanOutTarget",
    "Inflight",
    "fan_out",
    "send_now",
    "track",
]

_M = TypeVar("_M", bound=FanOutMessage)
_T = TypeVar("_T", bound=FanOutTarget[Any])

@final
class Inflight(Generic[_M]):
    message: _M
    attempts: int
    due_ms: int
    def __init__(self, message: _M, attempts: int, due_ms: int) -> None: ...

def send_now(subscriber: FanOutTarget[Any], window: int) -> bool: ...
def track(subscriber: _T, message: _M, attempts: int, due_ms: int, arm: Arm[_T] | None) -> Inflight[_M]: ...
def fan_out(
    targets: Mapping[_T, int],
    message: FanOutMessage,
    publisher: FanOutConnection | None,
    due_ms: int,
    window: int,
    durable_aside: bool,
    arm: Arm[_T],
) -> tuple[int, list[tuple[_T, int]] | None]: ...
