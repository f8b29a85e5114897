"""Protocol abuse by a tenant (or a buggy client): out-of-order frames, floods, tenant hopping, foreign ids."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastport_client_helpers import ClientFactory, SessionFactory
from picows import WSMsgType

from fastport.errors import ErrorCode
from fastport.server.app import FastportServer

from .hostile_helpers import Bystander

NOT_INITIALIZED = {"type": "error", "error": "Not initialized", "code": ErrorCode.NOT_INITIALIZED}


async def test_frames_out_of_order(connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander) -> None:
    client = await connect()
    for frame in (
        {"type": "subscribe", "topic": "victim/#"},
        {"type": "ack", "messageId": "m"},
        {"type": "publish", "topic": "victim/readings", "data": "x", "messageId": "m"},
        {"type": "init_file", "topic": "victim/readings", "fileId": "f"},
    ):
        client.send(frame)
        assert await client.recv() == NOT_INITIALIZED
    client.send_raw(b"\x02" + b"f" * 40, WSMsgType.BINARY)
    assert await client.recv() == NOT_INITIALIZED
    assert (await client.init(attacker["sessionName"], attacker["password"]))["success"] is True
    client.send({"type": "end_file", "topic": "t", "fileId": "never-opened"})
    answer = await client.recv()
    assert answer["code"] == ErrorCode.FILE_NOT_OPEN and answer["field"] == "fileId"
    client.send_raw(b"\x02" + b"f" * 36 + b"\0\0\0\0" + b"iv", WSMsgType.BINARY)
    assert (await client.recv())["code"] == ErrorCode.FILE_NOT_OPEN
    client.send_raw(b"\x07junk", WSMsgType.BINARY)
    assert (await client.recv())["code"] == ErrorCode.INVALID_FILE_CHUNK
    client.send({"type": "unsubscribe", "topic": "never"})
    answer = await client.recv()
    assert answer == {
        "type": "unsubscribe_response",
        "success": False,
        "error": "Not subscribed",
        "code": ErrorCode.NOT_SUBSCRIBED,
        "field": "topic",
        "topic": "never",
    }
    await bystander.check()


async def test_flood_of_10k_small_frames_is_answered_in_order(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect(attacker)
    ids = [f"flood-{i}" for i in range(10_000)]
    for message_id in ids:
        client.send({"type": "publish", "topic": "nobody/listens", "data": "x", "messageId": message_id})
    for message_id in ids:
        assert await client.recv() == {
            "type": "publish_response",
            "success": True,
            "messageId": message_id,
            "deliveredTo": 0,
        }
    await bystander.check()


async def test_flood_before_init_is_answered_is_bounded(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect()
    client.send({"type": "init", "sessionName": attacker["sessionName"], "password": attacker["password"]})
    for i in range(1000):
        client.send({"type": "subscribe", "topic": f"f/{i}"})
    answers = [await client.recv() for _ in range(1001)]
    kinds = [a.get("type") if a.get("type") != "error" else a.get("code") for a in answers]
    summary = {kind: kinds.count(kind) for kind in set(kinds)}
    assert kinds.count("init_response") == 1, summary
    assert answers[kinds.index("init_response")]["success"] is True, summary
    assert kinds.count("subscribe_response") + kinds.count(ErrorCode.LIMIT_EXCEEDED) == 1000, summary
    assert all(a["success"] is True for a in answers if a.get("type") == "subscribe_response"), summary
    # Frames are held only while init is pending, at most 256 of them: the rest are refused (4001) at once,
    # so before init is answered nothing but refusals goes out, and held frames are answered only after it.
    before_init = kinds[: kinds.index("init_response")]
    assert all(kind == ErrorCode.LIMIT_EXCEEDED for kind in before_init), summary
    assert kinds.count(ErrorCode.LIMIT_EXCEEDED) == len(before_init), summary
    await bystander.check()


async def test_reinit_into_another_tenant_is_refused(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect(attacker)
    answer = await client.init("victim", "victim-password")
    assert answer == {
        "type": "init_response",
        "success": False,
        "error": "Already initialized",
        "code": ErrorCode.ALREADY_INITIALIZED,
    }
    await client.subscribe("victim/#")
    client.publish("victim/readings", data="forged")
    assert (await client.recv())["deliveredTo"] == 0
    await client.expect_silence(0.3)
    await bystander.check()


async def test_subscribing_to_another_tenants_topics_leaks_nothing(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect(attacker)
    for topic_filter in ("victim/#", "victim/readings", "#", "+/+", "+/readings"):
        assert (await client.subscribe(topic_filter))["success"] is True
    await asyncio.sleep(0.3)  # the bystander publishes meanwhile
    await client.expect_silence(0.2)
    await bystander.check()


async def test_acks_for_foreign_or_unknown_message_ids_do_not_count(
    make_session: SessionFactory,
    connect: ClientFactory,
    attacker: dict[str, Any],
    bystander: Bystander,
    server: FastportServer,
) -> None:
    # A victim subscriber that holds its ack: the attacker tries to ack that message for it.
    victim = bystander.session
    publisher, slow = await connect(victim), await connect(victim)
    await slow.subscribe("held/+")
    message_id = publisher.publish("held/one", data="held")
    assert (await publisher.recv())["deliveredTo"] == 1
    assert (await slow.recv())["messageId"] == message_id
    client = await connect(attacker)
    ignored = server.broker.delivery.counters.ignored_acks
    for target in (message_id, "no-such-id", ""):
        client.send({"type": "ack", "topic": "held/one", "messageId": target})
        await client.expect_silence(0.1)  # acks are idempotent: ignored, no frame
    assert server.broker.delivery.counters.ignored_acks == ignored + 3
    # The victim's message is still held: no ack_received, and it is redelivered.
    await publisher.expect_silence(0.2)
    slow.send({"type": "ack", "topic": "held/one", "messageId": message_id})
    assert await publisher.recv() == {"type": "ack_received", "messageId": message_id, "topic": "held/one"}
    await bystander.check()


async def test_publishing_with_another_tenants_message_ids(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    victim = bystander.session
    publisher, slow = await connect(victim), await connect(victim)
    await slow.subscribe("held/+")
    message_id = publisher.publish("held/one", data="victim-data")
    assert (await publisher.recv())["deliveredTo"] == 1
    assert (await slow.recv())["data"] == "victim-data"
    attacker_pub, attacker_sub = await connect(attacker), await connect(attacker)
    await attacker_sub.subscribe("held/+")
    attacker_pub.publish("held/one", data="forged", message_id=message_id)
    assert await attacker_pub.recv() == {
        "type": "publish_response",
        "success": True,
        "messageId": message_id,
        "deliveredTo": 1,
    }
    assert (await attacker_sub.recv())["data"] == "forged"
    attacker_sub.send({"type": "ack", "topic": "held/one", "messageId": message_id})
    assert await attacker_pub.recv() == {"type": "ack_received", "messageId": message_id, "topic": "held/one"}
    # Nothing crossed: the victim's message is still held for its own subscriber only.
    await slow.expect_silence(0.2)
    await publisher.expect_silence(0.1)
    slow.send({"type": "ack", "topic": "held/one", "messageId": message_id})
    assert await publisher.recv() == {"type": "ack_received", "messageId": message_id, "topic": "held/one"}
    await attacker_pub.expect_silence(0.1)
    await bystander.check()


async def test_file_transfer_control_frames_do_not_cross_tenants(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect(attacker)
    file_id = "f" * 36
    client.send({"type": "init_file", "topic": "victim/readings", "fileId": file_id})
    client.send_raw(b"\x02" + file_id.encode() + b"\0\0\0\0" + b"ciphertext", WSMsgType.BINARY)
    client.send({"type": "end_file", "topic": "victim/readings", "fileId": file_id})
    await client.expect_silence(0.3)
    await bystander.check()


async def test_binary_and_text_garbage_mixed(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect(attacker)
    client.send_raw(orjson.dumps({"type": "subscribe", "topic": "ok"}), WSMsgType.BINARY)
    assert (await client.recv())["code"] == ErrorCode.INVALID_FILE_CHUNK
    await bystander.check()


async def test_too_many_open_file_transfers_are_refused_with_their_own_code(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect(attacker)
    for index in range(64):
        client.send({"type": "init_file", "topic": "files", "fileId": f"{index:036d}"})
    client.send({"type": "init_file", "topic": "files", "fileId": "x" * 36})
    answer = await client.recv()
    assert answer["code"] == ErrorCode.TOO_MANY_FILES and answer["error"] == "too many open file transfers: 64"
    client.send({"type": "end_file", "topic": "files", "fileId": f"{0:036d}"})
    client.send({"type": "init_file", "topic": "files", "fileId": "x" * 36})
    await client.expect_silence()
    await bystander.check()
