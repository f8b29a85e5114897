"""FrameListener: the per-frame hot path of a picows connection (reference twin).

picows calls ``on_ws_frame`` once per received frame. Nearly every frame a broker receives is a
whole text message (one ``ack`` per delivery, one ``publish`` per message), so that case is
handed straight to ``receiver(target, payload)``; everything else (fragments, control frames,
binary frames, reserved bits) goes to ``on_other_frame``, which refuses it with close 1003
(unsupported data) unless a subclass handles it.

Rules:

- Every frame sets ``heard`` (the idle sweep reads and clears it).
- A frame takes the fast path when it is a text frame with FIN set, no reserved bit, and no
  fragmented message is open (``fragments`` is None). Its payload is copied to ``bytes`` (a
  picows frame lives only during the call).
- ``receiver`` and ``target`` are set by the subclass once the connection is known; until then
  ``on_other_frame`` is called instead, so no frame is handed to a missing receiver.

``listener_c.pyx`` is the compiled twin (a ``cdef class`` picows calls without a Python frame);
both have the same names, signatures and behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

__all__ = ["FrameListener"]

_TEXT = WSMsgType.TEXT


class FrameListener(WSListener):
    """A picows listener that hands whole text frames to ``receiver(target, payload)``."""

    __slots__ = ("fragments", "heard", "receiver", "target")

    def __init__(self) -> None:
        super().__init__()
        #: Any frame arrived since the idle sweep last cleared this.
        self.heard = True
        #: Payloads of the fragmented message being received, None when none is open.
        self.fragments: list[bytes] | None = None
        #: Called with (target, payload) for every whole text frame; None: not connected.
        self.receiver: Callable[[Any, bytes], None] | None = None
        self.target: Any = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Hand a whole text frame to ``receiver``, any other to ``on_other_frame``."""
        self.heard = True
        receiver = self.receiver
        if (
            receiver is not None
            and frame.msg_type is _TEXT
            and frame.fin
            and self.fragments is None
            and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
        ):
            receiver(self.target, frame.get_payload_as_bytes())
        else:
            self.on_other_frame(transport, frame)

    def on_other_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Handle a frame the fast path does not take: here, refuse it with close 1003.

        A subclass that handles control frames, fragments or binary data overrides this.
        """
        transport.send_close(WSCloseCode.UNSUPPORTED_DATA, b"unsupported frame")
        transport.disconnect()
