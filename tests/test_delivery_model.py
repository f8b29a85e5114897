"""Model-based test: random connects, drops, publishes, acks and resumes of a durable client, over real sockets.

Every published message must reach the durable client and be acked end to end (the publisher gets
``ack_received`` for each: zero lost), nothing it never published may arrive (zero unexpected), and a message
may arrive twice only if a connection that received it was dropped before its ack was known to count
(at-least-once).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from fastport_client_helpers import ClientFactory, SessionFactory, WSClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastport.server.app import FastportServer

OPERATIONS = st.lists(
    st.sampled_from(["publish", "publish", "publish", "ack", "drop", "close", "connect", "settle"]),
    min_size=5,
    max_size=25,
)
_names = itertools.count()


class DurableClientModel:
    """The durable client under test, with what it saw."""

    def __init__(self, connect: ClientFactory, session: dict[str, Any]) -> None:
        self._connect = connect
        self.session = session
        self.client: WSClient | None = None
        self.received: Counter[str] = Counter()
        self.unacked: list[dict[str, Any]] = []
        self.maybe_duplicated: set[str] = set()

    async def connect(self) -> None:
        if self.client is not None:
            return
        client = await self._connect()
        client.send(
            {
                "type": "init",
                "sessionName": self.session["sessionName"],
                "password": "pw",
                "clientId": "model",
                "durable": True,
            }
        )
        response = await client.recv_type("init_response")
        assert response["success"] is True
        if not response["resumed"]:
            await client.subscribe("model/#")
        self.client = client

    async def pump(self, seconds: float = 0.05) -> None:
        """Take every frame that arrives within ``seconds``."""
        if self.client is None:
            return
        while True:
            try:
                frame = await self.client.recv(seconds)
            except TimeoutError:
                return
            if frame.get("type") == "message":
                self.received[frame["messageId"]] += 1
                self.unacked.append(frame)

    async def ack(self) -> None:
        if self.client is None:
            return
        for frame in self.unacked:
            self.client.send({"type": "ack", "topic": frame["topic"], "messageId": frame["messageId"]})
        self.unacked.clear()

    async def drop(self, clean: bool) -> None:
        if self.client is None:
            return
        await self.pump()
        # Whatever it received may come again: its acks may not have reached the broker.
        self.maybe_duplicated.update(self.received)
        if clean:
            await self.client.close()
        else:
            self.client.transport.underlying_transport.abort()
            await self.client.wait_closed()
        self.client = None
        self.unacked.clear()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
async def test_durable_client_loses_nothing(
    operations: list[str], server: FastportServer, make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session(f"model-{next(_names)}", retryInterval=60000)
    publisher = await connect(session)
    model = DurableClientModel(connect, session)
    await model.connect()
    published: list[str] = []
    confirmed: set[str] = set()

    async def read_publisher(until: str | None, seconds: float = 5.0) -> None:
        while True:
            try:
                frame = await publisher.recv(seconds)
            except TimeoutError:
                assert until is None, f"no {until}"
                return
            if frame["type"] == "ack_received":
                confirmed.add(frame["messageId"])
            elif frame["type"] == until:
                return

    for index, operation in enumerate(operations):
        if operation == "publish":
            published.append(publisher.publish(f"model/{index % 3}", data=str(index)))
            await read_publisher("publish_response")
        elif operation == "ack":
            await model.pump()
            await model.ack()
        elif operation in ("drop", "close"):
            await model.drop(clean=operation == "close")
        elif operation == "connect":
            await model.connect()
        else:
            await model.pump()
    await model.connect()
    await model.pump(0.3)
    await model.ack()
    await read_publisher(None, 0.3)
    lost = set(published) - confirmed
    unexpected = set(model.received) - set(published)
    duplicated = {message_id for message_id, count in model.received.items() if count > 1}
    assert not lost, f"lost {len(lost)} of {len(published)}"
    assert not unexpected
    assert duplicated <= model.maybe_duplicated
    await publisher.close()
    if model.client is not None:
        await model.client.close()
