"""picows listener: WebSocket frames in, broker calls out; the broker's ``Sink`` in the other direction.

A picows ``WSFrame`` lives only during ``on_ws_frame`` (picows's DANGER note), so its
payload is copied there. Fragmented messages are reassembled here, bounded by the
frame size limit. Close codes: 1009 for a message over the limit, 1007 for invalid
UTF-8 (decided by the broker), 1002 for a broken fragment sequence.
"""

from __future__ import annotations

import logging

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from fastport.broker.connection import Connection
from fastport.broker.core import Broker
from fastport.errors import CloseCode
from fastport.server.outbox import Flusher, Outbox

logger = logging.getLogger("fastport.server")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE


class BrokerListener(WSListener):  # type: ignore[misc]
    """One WebSocket connection, adapted to the broker."""

    def __init__(
        self, broker: Broker, flusher: Flusher, live: set[BrokerListener], max_message_size: int, remote: str
    ) -> None:
        super().__init__()
        self._broker = broker
        self._live = live
        self._flusher = flusher
        self._max_message_size = max_message_size
        self._remote = remote
        self._transport: WSTransport | None = None
        self._outbox: Outbox | None = None
        self._conn: Connection | None = None
        self._fragments: list[bytes] | None = None
        self._fragment_type = _TEXT
        self._fragment_size = 0
        self.paused = False

    # ------------------------------------------------------------- picows events

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self._outbox = Outbox(transport.underlying_transport.write, self._flusher)
        self._conn = self._broker.connect(self, self._remote)
        self._live.add(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        conn = self._conn
        assert conn is not None
        if msg_type is _TEXT and frame.fin and self._fragments is None:
            self._broker.receive(conn, frame.get_payload_as_bytes())
        elif msg_type is _CLOSE:
            self._on_close_frame(transport, frame)
        elif msg_type is _TEXT or msg_type is _BINARY or msg_type is _CONTINUATION:
            self._on_data_frame(msg_type, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._live.discard(self)
        if self._outbox is not None:
            self._outbox.discard()
        if self._conn is not None:
            self._broker.disconnect(self._conn)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def _on_close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self._outbox is not None:
            self._outbox.flush()
        transport.send_close(frame.get_close_code(), frame.get_close_message())
        transport.disconnect()

    def _on_data_frame(self, msg_type: WSMsgType, frame: WSFrame) -> None:
        fragments = self._fragments
        if msg_type is _CONTINUATION:
            if fragments is None:
                self.close(CloseCode.PROTOCOL_ERROR, "continuation frame without a message")
                return
        elif fragments is not None:
            self.close(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented message")
            return
        else:
            fragments = self._fragments = []
            self._fragment_type = msg_type
            self._fragment_size = 0
        self._fragment_size += frame.payload_size
        if self._fragment_size > self._max_message_size:
            self.close(
                CloseCode.MESSAGE_TOO_BIG, f"message too big: {self._fragment_size} > {self._max_message_size}"
            )
            return
        fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        self._fragments = None
        payload = b"".join(fragments)
        conn = self._conn
        assert conn is not None
        if self._fragment_type is _TEXT:
            self._broker.receive(conn, payload)
        else:
            self._broker.receive_binary(conn, payload)

    # ------------------------------------------------------------ the broker's Sink

    @property
    def is_open(self) -> bool:
        transport = self._transport
        return transport is not None and not transport.is_disconnected and not transport.is_close_frame_sent

    def send(self, payload: bytes) -> None:
        if self._outbox is not None and self.is_open:
            self._outbox.text(payload)

    def send_binary(self, payload: bytes) -> None:
        if self._outbox is not None and self.is_open:
            self._outbox.binary(payload)

    def close(self, code: int, reason: str) -> None:
        transport = self._transport
        if transport is None or transport.is_disconnected:
            return
        if self._outbox is not None:
            self._outbox.flush()
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode(code) if code < 3000 else code, reason.encode("utf-8")[:123])
        transport.disconnect()
