# cython: language_level=3, embedsignature=True, annotation_typing=False
"""Fan-out, compiled twin of ``fastport._speedups.fanout_py``.

Same rules, names, signatures, results and exceptions as the reference twin, whose module and
function docstrings are the documentation. The two rules are written once here too, as the
``cdef inline`` functions ``_send_now`` and ``_track``: ``fan_out`` calls them with the
attributes it has read already (so each is read once per subscriber), and the public
``send_now`` and ``track`` are thin wrappers that read them.
The Protocols and ``Arm`` are types with no compiled form: they are the reference twin's own,
re-exported.

``fan_out`` sends through ``sink.send`` as an ordinary call; on the server that is the bound
``text`` method of the connection's ``Outbox``, compiled or not, so this module needs no C-level
access to ``fastport._speedups.outbox_c`` and works with either outbox twin.

``Inflight`` entries come from a free list and stay out of the cyclic garbage collector: a
publish creates one per subscriber, and as tracked objects living for a round trip they made
the collector's full passes a noticeable share of fan-out CPU. That is safe because an entry is
never part of a reference cycle of its own (a message never refers to its entries); cycles
through an entry (message -> session -> subscriber -> inflight map -> entry) are broken by the
broker, which empties a subscriber's ``inflight`` map when it releases the subscriber.
"""

cimport cython

from types import GenericAlias

from fastport._speedups.fanout_py import Arm, FanOutConnection, FanOutMessage, FanOutSink, FanOutTarget

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


@cython.final
@cython.no_gc
@cython.freelist(1024)
cdef class Inflight:
    """One sent, unacked copy of a message to one subscriber: the message, its sends so far, its next retry time."""

    cdef public object message
    cdef public long long attempts
    cdef public long long due_ms

    def __init__(self, message: FanOutMessage, attempts: int, due_ms: int) -> None:
        self.message = message
        self.attempts = attempts
        self.due_ms = due_ms

    def __class_getitem__(cls, message_type):
        return GenericAlias(cls, message_type)


cdef inline bint _send_now(object subscriber, object sink, dict inflight, Py_ssize_t window) except -1:
    # The send-now rule. sink is the subscriber's connection's sink (None while it is offline) and
    # inflight its inflight map, read once by the caller.
    return sink is not None and not subscriber.queue and not sink.paused and len(inflight) < window


cdef inline Inflight _track(
    object subscriber,
    dict inflight,
    object message_id,
    object message,
    long long attempts,
    long long due_ms,
    object arm,
):
    # The track rule; inflight and message_id are subscriber.inflight and message.message_id.
    cdef Inflight entry = Inflight.__new__(Inflight)
    entry.message = message
    entry.attempts = attempts
    entry.due_ms = due_ms
    inflight[message_id] = entry
    if arm is not None and subscriber.retry_handle is None:
        _arm(subscriber, due_ms, arm)
    return entry


cdef int _arm(object subscriber, long long due_ms, object arm) except -1:
    # _track's cold part (once per idle subscriber), out of line so that _track inlines into fan_out.
    subscriber.retry_handle = arm(due_ms, subscriber)
    return 0


def send_now(subscriber, Py_ssize_t window):
    """Tell whether a QoS 1 message may go to a subscriber at once, rather than wait in its queue."""
    connection = subscriber.connection
    return _send_now(subscriber, None if connection is None else connection.sink, subscriber.inflight, window)


def track(subscriber, message, long long attempts, long long due_ms, arm):
    """Record a copy of a message just sent to a subscriber, and arm its retry timer if none is armed."""
    return _track(subscriber, subscriber.inflight, message.message_id, message, attempts, due_ms, arm)


def fan_out(targets, message, publisher, long long due_ms, Py_ssize_t window, bint durable_aside, arm):
    """Send a message's frame to every target that can take it now; return the count and the rest."""
    cdef dict matched = targets if type(targets) is dict else dict(targets)
    cdef object frame = message.frame
    cdef object message_id
    cdef Py_ssize_t sent = 0
    cdef list rest = None
    cdef dict inflight
    cdef object subscriber, qos, connection, sink
    if frame is None:
        raise TypeError("message.frame is None: a released message cannot be fanned out")
    message_id = message.message_id
    for subscriber, qos in matched.items():
        connection = subscriber.connection
        if connection is not None:
            if connection is publisher:
                continue
            if qos and not (durable_aside and subscriber.durable):
                sink = connection.sink
                inflight = subscriber.inflight
                if _send_now(subscriber, sink, inflight, window) and message_id not in inflight:
                    sink.send(frame)
                    _track(subscriber, inflight, message_id, message, 0, due_ms, arm)
                    sent += 1
                    continue
        if rest is None:
            rest = []
        rest.append((subscriber, qos))
    return sent, rest
