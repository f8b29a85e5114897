# cython: language_level=3, embedsignature=True, annotation_typing=False
"""FrameListener, compiled twin of ``fastport._speedups.listener_py``.

Same rules, names, signatures and behaviour as the reference twin, whose module and method
docstrings are the documentation. Here the class extends picows's ``WSListener`` at the C level,
so picows calls ``on_ws_frame`` through its vtable, and the frame's type, flags and payload are
read from the ``WSFrame`` struct: no Python frame and no enum object per received frame. This
module is built against picows's ``picows.pxd``, so it must be built with the picows version it
runs with (``pyproject.toml`` pins it for both).
"""

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

__all__ = ["FrameListener"]


cdef class FrameListener(WSListener):
    """A picows listener that hands whole text frames to ``receiver(target, payload)``."""

    cdef public bint heard
    cdef public object fragments
    cdef public object receiver
    cdef public object target

    def __init__(self) -> None:
        self.heard = True
        self.fragments = None
        self.receiver = None
        self.target = None

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        """Hand a whole text frame to ``receiver``, any other to ``on_other_frame``."""
        self.heard = True
        if (
            self.receiver is not None
            and frame.msg_type == WSMsgType.TEXT
            and frame.fin
            and self.fragments is None
            and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
        ):
            self.receiver(self.target, frame.get_payload_as_bytes())
        else:
            self.on_other_frame(transport, frame)

    def on_other_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Handle a frame the fast path does not take: here, refuse it with close 1003.

        A subclass that handles control frames, fragments or binary data overrides this.
        """
        transport.send_close(WSCloseCode.UNSUPPORTED_DATA, b"unsupported frame")
        transport.disconnect()
