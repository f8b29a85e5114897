"""picows listener: WebSocket frames in, broker calls out; the broker's ``Sink`` in the other direction.

A picows ``WSFrame`` lives only during ``on_ws_frame`` (picows's DANGER note), so its
payload is copied there. Fragmented messages are reassembled here, bounded by the
frame size limit. Close codes: 1009 for a message over the limit, 1007 for invalid
UTF-8 (decided by the broker), 1002 for a broken fragment sequence, a reserved bit set
(no extension is ever negotiated, RFC 6455 §5.2) or a close frame whose code a peer may
not send (RFC 6455 §7.4), and 4003 when no ``init`` succeeded within the init timeout.
picows itself closes with 1002 for bad opcodes, unmasked or oversized control frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from picows import WSCloseCode, WSFrame, WSMsgType, WSTransport

from fastport._speedups import Flusher, FrameListener, Outbox
from fastport.broker.connection import Connection
from fastport.broker.core import Broker
from fastport.errors import CloseCode, FrameTooLarge
from fastport.metrics import ServerCounters

logger = logging.getLogger("fastport.server")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING


def valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 §7.4.1-2, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _dropped(payload: bytes) -> None:
    """``send`` of a connection not connected (yet or any more): the frame is dropped."""


class ListenerShared:
    """What every connection's listener of one server shares (one object, not one slot each)."""

    __slots__ = ("broker", "counters", "flusher", "live", "max_message_size", "receive")

    def __init__(
        self,
        broker: Broker,
        flusher: Flusher,
        live: set[BrokerListener],
        max_message_size: int,
        counters: ServerCounters | None = None,
    ) -> None:
        self.broker = broker
        self.flusher = flusher
        #: Every connected listener (the idle sweep and shutdown walk it).
        self.live = live
        self.max_message_size = max_message_size
        self.counters = counters
        #: ``broker.receive``, bound once for every listener's ``receiver``.
        self.receive = broker.receive


class BrokerListener(FrameListener):
    """One WebSocket connection, adapted to the broker.

    Whole text frames go from ``FrameListener`` (a compiled twin in ``fastport._speedups``)
    straight to ``Broker.receive``; this class handles every other frame and the ``Sink`` side.
    ``target`` (a ``FrameListener`` field) is the broker's ``Connection`` once connected.

    ``_outbox`` is set from ``on_ws_connected`` until ``on_ws_disconnected`` (where picows has
    just set ``is_disconnected``). ``send`` is the outbox's own ``text`` meanwhile (a C call on
    the compiled twin, once per delivery), ``_dropped`` otherwise; frames queued after a close
    frame went out are dropped at the flush (``_write``). Per-connection state is kept to these
    slots: 10,000 idle connections are part of the memory budget.
    """

    __slots__ = (
        "_fragment_size",
        "_fragment_type",
        "_outbox",
        "_remote",
        "_shared",
        "_slow_timer",
        "_transport",
        "idle_since",
        "paused",
        "ping_sent_at",
        "send",
    )

    def __init__(self, shared: ListenerShared, remote: str) -> None:
        super().__init__()
        self._shared = shared
        self._remote = remote
        self._transport: WSTransport | None = None
        self._outbox: Outbox | None = None
        #: Queue one text frame (the broker's ``Sink.send``).
        self.send: Callable[[bytes], None] = _dropped
        self._fragment_type = _TEXT
        self._fragment_size = 0
        self.paused = False
        self.idle_since = 0.0
        self.ping_sent_at: float | None = None
        self._slow_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------- picows events

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        # Over this many queued bytes the transport calls pause_writing: a slow consumer.
        shared = self._shared
        transport.underlying_transport.set_write_buffer_limits(high=shared.broker.limits.outbound_buffer_limit)
        self._outbox = Outbox(self._write, shared.flusher)
        self.send = self._outbox.text
        self.target = shared.broker.connect(self, self._remote)
        self.receiver = shared.receive
        shared.live.add(self)
        # picows keeps the upgrade request and response for the connection's life (read-only
        # attributes); nothing reads their headers after the upgrade, so free them.
        transport.request.headers.clear()
        transport.response.headers.clear()

    def on_other_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Every frame but a whole text one (``FrameListener.on_ws_frame`` took those)."""
        msg_type = frame.msg_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self._protocol_error("reserved bit set without a negotiated extension")
        elif msg_type is _CLOSE:
            self._on_close_frame(transport, frame)
        elif msg_type is _PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type is _TEXT or msg_type is _BINARY or msg_type is _CONTINUATION:
            self._on_data_frame(msg_type, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        self._shared.live.discard(self)
        if self._outbox is not None:
            self._outbox.discard()
            self._outbox = None
        self.send = _dropped
        conn: Connection | None = self.target
        if conn is not None:
            handshake = transport.close_handshake
            received = handshake.recv if handshake is not None else None
            clean = received is not None and getattr(received.code, "value", received.code) == CloseCode.NORMAL
            self._shared.broker.disconnect(conn, clean=clean)

    def send_ping(self) -> None:
        """Ping the peer (the idle sweeper found it silent)."""
        if self._transport is not None and not self._transport.is_disconnected:
            self._transport.send_ping()

    def reap(self) -> None:
        """Close a peer that did not answer a ping."""
        self._close_now(CloseCode.GOING_AWAY, "no answer to ping")

    def pause_writing(self) -> None:
        """The peer reads slower than we write: hold QoS 1 in its queue, drop QoS 0, close it if it lasts."""
        self.paused = True
        if self._slow_timer is None:
            grace_s = self._shared.broker.limits.slow_consumer_grace_s
            self._slow_timer = asyncio.get_running_loop().call_later(grace_s, self._on_slow_consumer)

    def resume_writing(self) -> None:
        self.paused = False
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        if self.target is not None:
            self._shared.broker.writable(self.target)

    def _on_slow_consumer(self) -> None:
        self._slow_timer = None
        if self.paused:
            if self.target is not None:
                self._shared.broker.slow_consumer(self.target)
            self._close_now(CloseCode.SLOW_CONSUMER, "slow consumer: outbound buffer over its limit for too long")

    def _on_close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self._outbox is not None:
            self._outbox.flush()
        if frame.payload_size == 0:
            # No status code: answer 1000 (picows would put a literal 0 on the wire).
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        elif not valid_close_code(frame.get_close_code().value):
            # picows lets 0, 1006 and >= 5000 through; none may be sent by a peer.
            self._protocol_error(f"invalid close code {frame.get_close_code().value}")
        else:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def _protocol_error(self, reason: str) -> None:
        if self._shared.counters is not None:
            self._shared.counters.ws_protocol_errors += 1
        self.close(CloseCode.PROTOCOL_ERROR, reason)

    def _on_data_frame(self, msg_type: WSMsgType, frame: WSFrame) -> None:
        fragments = self.fragments
        if msg_type is _CONTINUATION:
            if fragments is None:
                self._protocol_error("continuation frame without a message")
                return
        elif fragments is not None:
            self._protocol_error("new message inside a fragmented message")
            return
        else:
            fragments = self.fragments = []
            self._fragment_type = msg_type
            self._fragment_size = 0
        self._fragment_size += frame.payload_size
        limit = self._shared.max_message_size
        if self._fragment_size > limit:
            if self._shared.counters is not None:
                self._shared.counters.ws_message_too_big += 1
            error = FrameTooLarge(f"message too big: {self._fragment_size} > {limit}")
            self.close(error.close_code, error.error)
            return
        fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        self.fragments = None
        payload = b"".join(fragments)
        conn = self.target
        assert conn is not None
        if self._fragment_type is _TEXT:
            self._shared.broker.receive(conn, payload)
        else:
            self._shared.broker.receive_binary(conn, payload)

    # ------------------------------------------------------------ the broker's Sink

    @property
    def is_open(self) -> bool:
        # ``_outbox`` is set only while connected (see the class docstring); the delivery path asks on every ack.
        return self._outbox is not None and not self._transport.is_close_frame_sent  # type: ignore[union-attr]

    @property
    def backlog(self) -> int:
        transport = self._transport
        return 0 if transport is None else int(transport.underlying_transport.get_write_buffer_size())

    def _write(self, data: bytes) -> None:
        """The outbox's flush: hand the iteration's frames to the socket, unless a close frame went first."""
        transport = self._transport
        if not transport.is_close_frame_sent:  # type: ignore[union-attr]  # connected: see the class docstring
            transport.underlying_transport.write(data)  # type: ignore[union-attr]

    def send_binary(self, payload: bytes) -> None:
        outbox = self._outbox
        if outbox is not None and not self._transport.is_close_frame_sent:  # type: ignore[union-attr]
            outbox.binary(payload)

    def close(self, code: int, reason: str) -> None:
        transport = self._transport
        if transport is None or transport.is_disconnected:
            return
        if self._outbox is not None:
            self._outbox.flush()
        if not transport.is_close_frame_sent:
            transport.send_close(
                WSCloseCode(code) if code < 3000 else code,  # type: ignore[arg-type]  # picows takes any int
                reason.encode("utf-8")[:123],
            )
        transport.disconnect()

    def _close_now(self, code: int, reason: str) -> None:
        """Close without waiting for the peer to read what is queued (it is not reading): drop it, reset."""
        transport = self._transport
        if transport is None or transport.is_disconnected:
            return
        if self._outbox is not None:
            self._outbox.discard()
        if not transport.is_close_frame_sent:
            transport.send_close(
                WSCloseCode(code) if code < 3000 else code,  # type: ignore[arg-type]  # picows takes any int
                reason.encode("utf-8")[:123],
            )
        transport.disconnect(graceful=False)
