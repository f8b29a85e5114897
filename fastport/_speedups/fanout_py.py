"""Fan-out: the at-least-once rules of a first delivery, and the publish loop built on them (reference twin).

These two rules are defined here once; the publish loop below and the broker's delivery policy
(``fastport.broker.delivery``: queue drains, retained messages, resumes) both call them.

- **Send now?** ``send_now(subscriber, window)``: a QoS 1 message may go to a subscriber at once
  when it is online (``connection`` is not None), nothing is queued ahead of it (``queue`` is
  empty or None), its sink is not paused, and its ``inflight`` map holds fewer than ``window``
  entries. Otherwise it waits in the subscriber's queue, in publish order.
- **Track a sent copy.** ``track(subscriber, message, attempts, due_ms, arm)`` records
  ``subscriber.inflight[message.message_id] = Inflight(message, attempts, due_ms)``. The map is
  kept in retry order (a dict keeps insertion order, and every copy is due one retry interval
  after it was sent), so the caller makes sure the id is not in it already: the entry goes last.
  A subscriber has one retry timer, for its first entry: ``arm(due_ms, subscriber)`` is called
  only when ``retry_handle`` is None, and only when ``arm`` is given (an offline subscriber is
  armed by its resume).

``fan_out`` is the per-subscriber loop of a publish. In match order, it sends ``message.frame``
to each target whose subscription QoS is not 0, whose connection is not the publisher's, that is
not durable while ``durable_aside`` (its delivery state must be stored first), that does not
hold the message id already, and that ``send_now`` allows, then ``track``s the copy (attempts 0).
The publisher's own subscription is skipped; every other target is returned with its QoS, left
to the delivery policy (queue, drop, QoS 0, durable store).

What these functions read and write of a subscriber, its connection, its sink and a message is
spelled out by the Protocols below; the broker's ``Subscriber``, ``Connection`` and ``Message``
satisfy them. Sans-I/O: frames go to ``sink.send``, timers to ``arm``, time is the ``due_ms``
argument. ``fanout_c.pyx`` is the compiled twin; both have the same names, signatures, results
and exceptions. The Protocols and ``Arm`` are types only, defined here; the compiled twin
re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

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


_M = TypeVar("_M", bound="FanOutMessage")


class FanOutSink(Protocol):
    """What fan-out needs of a connection's outbound sink."""

    @property
    def paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark (a slow consumer)."""

    def send(self, payload: bytes, /) -> object:
        """Queue one text frame."""


class FanOutConnection(Protocol):
    """What fan-out needs of a subscriber's connection."""

    @property
    def sink(self) -> FanOutSink:
        """The connection's outbound sink."""


class FanOutMessage(Protocol):
    """What fan-out needs of a published message."""

    @property
    def frame(self) -> bytes | None:
        """The encoded ``message`` frame of a first delivery (None once the message is released)."""

    @property
    def message_id(self) -> str:
        """The publisher's messageId, the key of the message in each subscriber's ``inflight``."""


class FanOutTarget(Protocol[_M]):
    """What fan-out reads and writes of a subscriber (hashable: it keys the matched targets)."""

    #: The handle of the subscriber's retry timer, None while none is armed.
    retry_handle: int | None

    @property
    def connection(self) -> FanOutConnection | None:
        """The subscriber's connection, None while it is offline."""

    @property
    def queue(self) -> Sized | None:
        """Messages waiting for the subscriber, in publish order (None or empty: none)."""

    @property
    def durable(self) -> bool:
        """Whether the subscriber outlives its connections (its delivery state may need storing)."""

    @property
    def inflight(self) -> dict[str, Inflight[_M]]:
        """messageId -> the copy sent and not acked yet, in retry order."""


# Any: a target's inflight map is invariant in its message type, which the caller picks.
_T = TypeVar("_T", bound="FanOutTarget[Any]")

Arm: TypeAlias = Callable[[int, _T], int]
"""``arm(due_ms, subscriber)`` schedules the subscriber's retry timer and returns its handle."""


class Inflight(Generic[_M]):
    """One sent, unacked copy of a message to one subscriber: the message, its sends so far, its next retry time.

    Generic in the message type for type checkers (``Inflight[Message]``); the compiled twin is
    subscriptable the same way.
    """

    __slots__ = ("attempts", "due_ms", "message")

    def __init__(self, message: _M, attempts: int, due_ms: int) -> None:
        """Record a copy.

        Args:
            message: The message sent.
            attempts: Redeliveries so far (0 for a first delivery).
            due_ms: When the copy is due for its next redelivery.
        """
        self.message = message
        self.attempts = attempts
        self.due_ms = due_ms


def send_now(subscriber: FanOutTarget[Any], window: int) -> bool:
    """Tell whether a QoS 1 message may go to a subscriber at once, rather than wait in its queue.

    Args:
        subscriber: The subscriber.
        window: The most entries its ``inflight`` map may hold (the session's inflight window).

    Returns:
        True if the subscriber is online, nothing is queued ahead of it, its sink is not paused,
        and its ``inflight`` holds fewer than ``window`` entries.
    """
    connection = subscriber.connection
    return (
        connection is not None
        and not subscriber.queue
        and not connection.sink.paused
        and len(subscriber.inflight) < window
    )


def track(subscriber: _T, message: _M, attempts: int, due_ms: int, arm: Arm[_T] | None) -> Inflight[_M]:
    """Record a copy of a message just sent to a subscriber, and arm its retry timer if none is armed.

    Args:
        subscriber: The subscriber; ``message.message_id`` must not be in its ``inflight`` yet,
            so the new entry goes last (the map stays in retry order).
        message: The message sent.
        attempts: Redeliveries so far (0 for a first delivery).
        due_ms: When the copy is due for its next redelivery.
        arm: ``arm(due_ms, subscriber)`` schedules the subscriber's retry timer and returns its
            handle; called only while ``retry_handle`` is None. None: the subscriber is offline,
            its resume arms it.

    Returns:
        The new ``Inflight`` entry.
    """
    entry = Inflight(message, attempts, due_ms)
    subscriber.inflight[message.message_id] = entry
    if arm is not None and subscriber.retry_handle is None:
        subscriber.retry_handle = arm(due_ms, subscriber)
    return entry


def fan_out(
    targets: Mapping[_T, int],
    message: FanOutMessage,
    publisher: FanOutConnection | None,
    due_ms: int,
    window: int,
    durable_aside: bool,
    arm: Arm[_T],
) -> tuple[int, list[tuple[_T, int]] | None]:
    """Send a message's frame to every target that can take it now; return the count and the rest.

    Args:
        targets: Subscriber -> subscription QoS (a topic index match), in match order.
        message: The published message, QoS 1.
        publisher: The publishing connection, skipped as a target (None: no one is skipped).
        due_ms: The retry time of every copy sent here.
        window: A subscriber's ``inflight`` may hold at most this many entries.
        durable_aside: Leave durable subscribers to the caller (it must store their delivery state).
        arm: ``arm(due_ms, subscriber)`` schedules a retry timer and returns its handle (see ``track``).

    Returns:
        (copies sent, the rest): every target neither sent to nor the publisher's own, in match
        order, as (subscriber, QoS); None instead of an empty list.

    Raises:
        TypeError: If ``message.frame`` is None (a released message has no frame to send).
    """
    frame = message.frame
    if frame is None:
        raise TypeError("message.frame is None: a released message cannot be fanned out")
    message_id = message.message_id
    sent = 0
    rest: list[tuple[_T, int]] | None = None
    for subscriber, qos in targets.items():
        connection = subscriber.connection
        if connection is not None:
            if connection is publisher:
                continue
            if (
                qos
                and not (durable_aside and subscriber.durable)
                and send_now(subscriber, window)
                and message_id not in subscriber.inflight
            ):
                connection.sink.send(frame)
                track(subscriber, message, 0, due_ms, arm)
                sent += 1
                continue
        if rest is None:
            rest = []
        rest.append((subscriber, qos))
    return sent, rest
