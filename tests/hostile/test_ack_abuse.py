"""Ack abuse: repeated, foreign and made-up acks are idempotent — no frame back, counted, nothing else moves."""

from __future__ import annotations

from typing import Any

from fastport_client_helpers import ClientFactory

from fastport.server.app import FastportServer

from .hostile_helpers import Bystander


async def test_a_flood_of_repeated_and_unknown_acks_is_silent_and_counted(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander, server: FastportServer
) -> None:
    publisher, subscriber = await connect(attacker), await connect(attacker)
    await subscriber.subscribe("own/+")
    publisher.send({"type": "publish", "topic": "own/one", "data": "x", "messageId": "m-1"})
    assert (await publisher.recv())["deliveredTo"] == 1
    assert (await subscriber.recv())["messageId"] == "m-1"
    counters = server.broker.delivery.counters
    ignored = counters.ignored_acks  # the bystander acks alongside: only ignored acks are ours alone
    subscriber.send({"type": "ack", "topic": "own/one", "messageId": "m-1"})
    assert await publisher.recv() == {"type": "ack_received", "messageId": "m-1", "topic": "own/one"}
    for i in range(500):
        subscriber.send({"type": "ack", "topic": "own/one", "messageId": "m-1"})  # acked already
        subscriber.send({"type": "ack", "messageId": f"never-{i}"})  # never delivered
    await subscriber.expect_silence(0.3)
    await publisher.expect_silence(0.1)
    assert counters.ignored_acks == ignored + 1000
    # The connection still works: a new message is delivered and its ack counts.
    publisher.send({"type": "publish", "topic": "own/two", "data": "y", "messageId": "m-2"})
    assert (await publisher.recv())["deliveredTo"] == 1
    assert (await subscriber.recv())["messageId"] == "m-2"
    subscriber.send({"type": "ack", "topic": "own/two", "messageId": "m-2"})
    assert (await publisher.recv())["type"] == "ack_received"
    await bystander.check()
