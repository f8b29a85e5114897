"""``FrameListener`` on both twins, against the rules in ``fastport._speedups.listener_py``.

Frames are real picows ``WSFrame`` objects (``_make_test_ws_frame``); the server tests run the
same class behind real sockets.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect, ws_create_server
from picows.picows import _make_test_ws_frame

if TYPE_CHECKING:
    from speedups.conftest import Twin

    # The base a type checker sees for the test subclasses below; at run time each binds its twin's own.
    from fastport._speedups.listener_py import FrameListener  # noqa: F401

TRANSPORT = None  # the listener passes it through to on_other_frame untouched


def make(speedups: Twin, connected: bool = True) -> Any:
    if not TYPE_CHECKING:  # the twin under test; a type checker sees the reference class, imported above
        FrameListener = speedups.FrameListener

    class Listener(FrameListener):
        __slots__ = ("received", "others")

        def __init__(self) -> None:
            super().__init__()
            self.received: list[tuple[Any, bytes]] = []
            self.others: list[tuple[int, bytes]] = []

        def on_other_frame(self, transport: Any, frame: Any) -> None:
            assert transport is TRANSPORT
            self.others.append((int(frame.msg_type), frame.get_payload_as_bytes()))

    listener = Listener()
    if connected:
        listener.target = "conn-1"
        listener.receiver = lambda target, payload: listener.received.append((target, payload))
    return listener


def frame(
    msg_type: WSMsgType = WSMsgType.TEXT, payload: bytes = b'{"type":"ack"}', fin: bool = True, rsv1: bool = False
) -> Any:
    return _make_test_ws_frame(msg_type, payload, fin, rsv1)


def test_defaults(speedups: Twin) -> None:
    listener = make(speedups, connected=False)
    assert (listener.heard, listener.fragments, listener.receiver, listener.target) == (True, None, None, None)


def test_whole_text_frame_goes_to_the_receiver_as_bytes(speedups: Twin) -> None:
    listener = make(speedups)
    listener.heard = False
    listener.on_ws_frame(TRANSPORT, frame(payload="é".encode()))
    assert listener.received == [("conn-1", "é".encode())]
    assert type(listener.received[0][1]) is bytes
    assert listener.others == [] and listener.heard is True


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("not final", {"fin": False}),
        ("reserved bit", {"rsv1": True}),
        ("binary", {"msg_type": WSMsgType.BINARY}),
        ("continuation", {"msg_type": WSMsgType.CONTINUATION}),
        ("ping", {"msg_type": WSMsgType.PING, "payload": b"p"}),
        ("close", {"msg_type": WSMsgType.CLOSE, "payload": b"\x03\xe8"}),
    ],
)
def test_other_frames_go_to_on_other_frame(speedups: Twin, case: str, kwargs: dict[str, Any]) -> None:
    listener = make(speedups)
    listener.heard = False
    sent = frame(**kwargs)
    listener.on_ws_frame(TRANSPORT, sent)
    assert listener.received == [], case
    assert listener.others == [(int(sent.msg_type), sent.get_payload_as_bytes())], case
    assert listener.heard is True, case


def test_a_text_frame_inside_a_fragmented_message_is_not_taken(speedups: Twin) -> None:
    listener = make(speedups)
    listener.fragments = [b"first part"]
    listener.on_ws_frame(TRANSPORT, frame())
    assert listener.received == [] and len(listener.others) == 1
    listener.fragments = None
    listener.on_ws_frame(TRANSPORT, frame())
    assert len(listener.received) == 1


def test_without_a_receiver_every_frame_goes_to_on_other_frame(speedups: Twin) -> None:
    listener = make(speedups, connected=False)
    listener.on_ws_frame(TRANSPORT, frame())
    assert listener.others == [(WSMsgType.TEXT.value, b'{"type":"ack"}')]


def test_receiver_errors_propagate(speedups: Twin) -> None:
    listener = make(speedups)

    def boom(target: Any, payload: bytes) -> None:
        raise RuntimeError("receiver failed")

    listener.receiver = boom
    with pytest.raises(RuntimeError, match="receiver failed"):
        listener.on_ws_frame(TRANSPORT, frame())


async def test_by_default_other_frames_are_refused_with_1003(speedups: Twin) -> None:
    """A real picows server whose listener handles nothing but the fast path, and a real client."""
    received: list[bytes] = []

    if not TYPE_CHECKING:  # the twin under test; a type checker sees the reference class, imported above
        FrameListener = speedups.FrameListener

    class TextOnly(FrameListener):
        __slots__ = ()

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.target = "conn"
            self.receiver = lambda target, payload: received.append(payload)

    class Client(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            """Frames from the server: only its close frame is expected."""

    server = await ws_create_server(lambda _request: TextOnly(), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        transport, _ = await ws_connect(Client, f"ws://127.0.0.1:{port}/")
        transport.send(WSMsgType.TEXT, b"taken")
        transport.send(WSMsgType.BINARY, b"refused")
        await asyncio.wait_for(transport.wait_disconnected(), 5)
        assert received == [b"taken"]
        handshake = transport.close_handshake
        assert handshake is not None and handshake.recv is not None
        assert handshake.recv.code.value == WSCloseCode.UNSUPPORTED_DATA.value
    finally:
        server.close()
        await server.wait_closed()
