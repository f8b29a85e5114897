"""RFC 6455 abuse on a raw socket: every bad frame gets its exact close code; the bystander notices nothing."""

from __future__ import annotations

import asyncio

import pytest

from fastport.errors import CloseCode, ErrorCode
from fastport.server.app import FastportServer

from .hostile_helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Bystander,
    RawFactory,
    build_frame,
    close_payload,
    upgrade_request,
)

SUBSCRIBE = b'{"type":"subscribe","topic":"t"}'
NOT_INITIALIZED = {"type": "error", "error": "Not initialized", "code": ErrorCode.NOT_INITIALIZED}


@pytest.mark.parametrize("rsv", [0b100, 0b010, 0b001, 0b111])
async def test_reserved_bits_close_1002(raw: RawFactory, bystander: Bystander, rsv: int) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, SUBSCRIBE, rsv=rsv)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_reserved_bit_on_a_ping_closes_1002(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_PING, b"hi", rsv=0b100)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_reserved_opcodes_close_1002(raw: RawFactory, bystander: Bystander, opcode: int) -> None:
    ws = await raw()
    ws.frame(opcode, b"x")
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
async def test_fragmented_control_frame_closes_1002(raw: RawFactory, bystander: Bystander, opcode: int) -> None:
    ws = await raw()
    ws.frame(opcode, close_payload(1000) if opcode == OP_CLOSE else b"a", fin=False)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
async def test_control_frame_over_125_bytes_closes_1002(raw: RawFactory, bystander: Bystander, opcode: int) -> None:
    ws = await raw()
    ws.frame(opcode, close_payload(1000, b"x" * 124) if opcode == OP_CLOSE else b"p" * 126)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_ping_between_fragments_is_answered_and_the_message_completes(
    raw: RawFactory, bystander: Bystander
) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, SUBSCRIBE[:10], fin=False)
    ws.frame(OP_PING, b"mid")
    ws.frame(OP_CONT, SUBSCRIBE[10:20], fin=False)
    ws.frame(OP_CONT, SUBSCRIBE[20:], fin=True)
    assert await ws.read_frame() == (True, OP_PONG, b"mid")
    assert await ws.recv() == NOT_INITIALIZED
    await bystander.check()


async def test_binary_fragment_interleaved_in_a_text_message_closes_1002(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, SUBSCRIBE[:10], fin=False)
    ws.frame(OP_BINARY, b"\x02" + b"f" * 40, fin=False)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_text_fragment_followed_by_a_new_text_frame_closes_1002(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, SUBSCRIBE[:10], fin=False)
    ws.frame(OP_TEXT, SUBSCRIBE)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_continuation_without_a_message_closes_1002(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_CONT, SUBSCRIBE)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_invalid_utf8_in_one_frame_closes_1007(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, b'{"type":"subscribe","topic":"\xff\xfe"}')
    assert await ws.expect_close() == CloseCode.INVALID_DATA
    await bystander.check()


async def test_invalid_utf8_split_across_fragments_closes_1007(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    # "\xc3" ends the first fragment, "(" (not a continuation byte) starts the second.
    ws.frame(OP_TEXT, b'{"type":"subscribe","topic":"\xc3', fin=False)
    ws.frame(OP_CONT, b'("}', fin=True)
    assert await ws.expect_close() == CloseCode.INVALID_DATA
    await bystander.check()


async def test_valid_utf8_split_inside_a_character_is_accepted(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    payload = '{"type":"subscribe","topic":"é"}'.encode()
    cut = payload.index(b"\xc3") + 1
    ws.frame(OP_TEXT, payload[:cut], fin=False)
    ws.frame(OP_CONT, payload[cut:])
    assert await ws.recv() == NOT_INITIALIZED
    await bystander.check()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
async def test_invalid_close_codes_close_1002(raw: RawFactory, bystander: Bystander, code: int) -> None:
    ws = await raw()
    ws.frame(OP_CLOSE, close_payload(code, b"bye"))
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4000, 4999])
async def test_valid_close_codes_are_echoed(raw: RawFactory, bystander: Bystander, code: int) -> None:
    ws = await raw()
    ws.frame(OP_CLOSE, close_payload(code, b"bye"))
    assert await ws.expect_close() == code
    await bystander.check()


async def test_empty_close_is_answered_1000(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_CLOSE, b"")
    assert await ws.expect_close() == CloseCode.NORMAL
    await bystander.check()


async def test_one_byte_close_payload_closes_1002(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_CLOSE, b"\x03")
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_close_reason_not_utf8_closes_1007(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_CLOSE, close_payload(1000, b"\xff\xfe bye"))
    assert await ws.expect_close() == CloseCode.INVALID_DATA
    await bystander.check()


async def test_unmasked_client_frame_closes_1002(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, SUBSCRIBE, masked=False)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_64_bit_length_with_the_top_bit_set_closes_1002(raw: RawFactory, bystander: Bystander) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, b"", length=1 << 63, length_form=127)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


@pytest.mark.parametrize(("length", "form"), [(10, 126), (10, 127), (1000, 127)])
async def test_non_minimal_length_encoding_closes_1002(
    raw: RawFactory, bystander: Bystander, length: int, form: int
) -> None:
    ws = await raw()
    ws.frame(OP_TEXT, b"x" * length, length_form=form)
    assert await ws.expect_close() == CloseCode.PROTOCOL_ERROR
    await bystander.check()


async def test_declared_length_over_the_limit_closes_1009_before_the_payload(
    server: FastportServer, raw: RawFactory, bystander: Bystander
) -> None:
    ws = await raw()
    ws.send(build_frame(OP_TEXT, b"", length=server.config.max_frame_size + 1)[:-4] + b"\0\0\0\0")
    assert await ws.expect_close() == CloseCode.MESSAGE_TOO_BIG
    await bystander.check()


async def test_fragments_adding_up_over_the_limit_close_1009(
    server: FastportServer, raw: RawFactory, bystander: Bystander
) -> None:
    ws = await raw()
    half = b"x" * (server.config.max_frame_size // 2 + 1)
    ws.frame(OP_TEXT, half, fin=False)
    ws.frame(OP_CONT, half, fin=True)
    assert await ws.expect_close() == CloseCode.MESSAGE_TOO_BIG
    await bystander.check()


@pytest.mark.parametrize("server_settings", [{"http_head_timeout_s": 0.5}])
async def test_handshake_dribbled_byte_by_byte_gets_408(server: FastportServer, bystander: Bystander) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = upgrade_request(server.port)
    try:
        for byte in request[:60]:  # 60 bytes at 20 ms each: well past the 0.5 s allowed
            if writer.transport.is_closing() or reader.at_eof() or len(reader._buffer):  # type: ignore[attr-defined]
                break
            writer.write(bytes((byte,)))
            await asyncio.sleep(0.02)
        data = await asyncio.wait_for(reader.read(), 2.0)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert server.counters.http_head_timeouts == 1
    await bystander.check()


@pytest.mark.parametrize("server_settings", [{"http_head_timeout_s": 0.3}])
async def test_handshake_never_finished_gets_408(server: FastportServer, bystander: Bystander) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(upgrade_request(server.port)[:-2])
        data = await asyncio.wait_for(reader.read(), 2.0)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    await bystander.check()


@pytest.mark.parametrize("server_settings", [{"http_head_timeout_s": 0.3}])
async def test_connection_opened_and_silent_is_closed_without_an_answer(
    server: FastportServer, bystander: Bystander
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        data = await asyncio.wait_for(reader.read(), 2.0)
    finally:
        writer.close()
    assert data == b""
    await bystander.check()
