"""Scale-out through Redis: sessions shared by every node, publishes and acks carried between nodes.

``RedisEngine`` is the broker's ``ClusterLink`` (``fastport.broker.cluster``); this module alone
knows the wire format of what nodes send each other.

Every broker process is a node with a random id. Through one Redis (``--engine
redis://HOST:PORT/DB``, keys and channels under ``--engine-prefix``):

* sessions live in hashes ``{prefix}session:{name}`` (hashed credentials, settings,
  suspension); a node that meets an unknown session name looks it up there, and drops and
  suspensions are announced on ``{prefix}control``;
* every publish accepted by a node is appended to the stream ``{prefix}publish`` (trimmed to
  about ``STREAM_LENGTH`` entries); every other node reads the stream from where it left off
  and fans each publish out to its own subscribers of that session and topic (dedupe by
  messageId);
* the first ack a node sees for a message of another node is sent to that node's channel
  ``{prefix}node:{id}``, which turns it into ``ack_received`` for the publisher.

Guarantees. While Redis is unreachable, each node keeps serving its own clients (local
fan-out, acks and retries are untouched), counts and logs the outage, and holds what it must
forward in a bounded queue (``MAX_OUTBOX``), appended in order once Redis answers again
(reconnect with backoff up to 5 s); what overflows that queue is dropped and counted. A node
that was cut off reads the stream on from its last entry when it is back, so it misses
nothing that Redis still holds (the last ``STREAM_LENGTH`` publishes; a Redis that restarts
without persistence holds only what was appended since). Acks and session events travel on
pub/sub channels: one sent while its receiver is cut off is lost (the publisher then misses
that ``ack_received``; the fastPort clients re-publish, and the dedupe answers them). A
durable client belongs to the node it last connected to (``{prefix}durable:{session}:{id}``);
when it connects to another node, that node asks the owner for it on the owner's channel, and
the owner closes its connection (4004 if it is still there), hands over its filters and held
messages and forgets it. If the owner does not answer within ``HANDOVER_TIMEOUT_S`` (it is
gone), the client starts fresh (``"resumed": false``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any, Final, cast

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from fastport.broker.cluster import ClusterHandler, DurableState, HeldMessage
from fastport.broker.journal import SessionRecord
from fastport.errors import ConfigError, EngineUnavailable
from fastport.protocol.frames import Publish

logger = logging.getLogger("fastport.engine")

MAX_OUTBOX: Final = 100_000
STREAM_LENGTH: Final = 100_000
BATCH: Final = 500
BACKOFF_S: Final = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
HANDOVER_TIMEOUT_S: Final = 3.0

#: What XREAD answers this client (RESP2, no decode_responses): per stream, its name and its
#: entries as (id, fields).
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class RedisEngine:
    """One node's link to the shared Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"engine must be redis://HOST:PORT/DB, got {url!r}")
        self.url = url
        self.prefix = prefix
        self.node_id = secrets.token_hex(8)
        # Reads block for up to 1 s (XREAD BLOCK), so the socket timeout must be longer.
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        self._handler: ClusterHandler | None = None
        #: (channel or stream, payload, is_stream) waiting to be sent.
        self._outbox: deque[tuple[str, bytes, bool]] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._handovers: dict[tuple[str, str], asyncio.Future[dict[str, Any] | None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.connected = False
        self.outages = 0
        self.forwarded = 0
        self.received = 0
        self.dropped = 0

    # ------------------------------------------------------------------ lifecycle

    def key(self, *parts: str) -> str:
        """A key or channel name under this engine's prefix."""
        return self.prefix + ":".join(parts)

    @property
    def multi_node(self) -> bool:
        """Other nodes may exist (a message's first ack may come from one of them)."""
        return True

    async def start(self, handler: ClusterHandler) -> None:
        """Check that Redis answers, then start forwarding and listening.

        Raises:
            ConfigError: Redis does not answer at startup.
        """
        self._handler = handler
        try:
            await self._redis.ping()
            # Read the stream on from its newest entry, by id (not "$"): after an outage, reading
            # on from an id returns everything appended meanwhile, even to a restarted Redis.
            newest = await self._redis.xrevrange(self.key("publish"), count=1)
        except (RedisError, OSError) as exc:
            raise ConfigError(f"engine {self.url}: Redis does not answer: {exc}") from None
        self._stream_start = cast(bytes, newest[0][0]) if newest else b"0-0"
        self.connected = True
        self._tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._listen_loop()),
            asyncio.create_task(self._stream_loop()),
        ]

    async def close(self) -> None:
        """Stop the tasks and close the connection pool."""
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            # A task's own failure was logged where it happened; closing must go on.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._redis.aclose()

    def _outage(self, what: str, exc: BaseException) -> None:
        if self.connected:
            self.connected = False
            self.outages += 1
            logger.warning("engine: Redis unreachable (%s: %s); serving local clients, retrying", what, exc)

    def _recovered(self) -> None:
        if not self.connected:
            self.connected = True
            logger.warning("engine: Redis reachable again")

    # ------------------------------------------------------------------ outgoing

    def _send(self, channel: str, payload: dict[str, Any], stream: bool = False) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            self.dropped += 1
            return
        self._outbox.append((channel, orjson.dumps(payload), stream))
        self._wakeup.set()

    def forward_publish(self, session_name: str, publish: Publish, timestamp: int | float) -> None:
        """Send a locally accepted publish to the other nodes."""
        fields = {
            "o": self.node_id,
            "s": session_name,
            "id": publish.message_id,
            "t": publish.topic,
            "d": publish.data,
            "h": publish.hash,
            "ts": timestamp,
            "q": publish.qos,
            "r": publish.retain,
        }
        self._send(self.key("publish"), fields, stream=True)

    def forward_ack(self, origin: str, session_name: str, message_id: str) -> None:
        """Tell ``origin`` that its message was acked here."""
        self._send(self.key("node", origin), {"k": "ack", "s": session_name, "id": message_id})

    def announce(self, kind: str, session_name: str, value: bool = True) -> None:
        """Tell the other nodes that a session was dropped or (un)suspended."""
        self._send(self.key("control"), {"k": kind, "s": session_name, "v": value, "o": self.node_id})

    async def _send_loop(self) -> None:
        attempt = 0
        while True:
            if not self._outbox:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [self._outbox[index] for index in range(min(BATCH, len(self._outbox)))]
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, payload, stream in batch:
                        if stream:
                            pipe.xadd(channel, {"m": payload}, maxlen=STREAM_LENGTH, approximate=True)
                        else:
                            pipe.publish(channel, payload)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self._outage("publish", exc)
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
                continue
            attempt = 0
            self._recovered()
            for _ in batch:
                self._outbox.popleft()
            self.forwarded += len(batch)

    # ------------------------------------------------------------------ incoming

    async def _stream_loop(self) -> None:
        stream = self.key("publish")
        last_id = self._stream_start
        attempt = 0
        while True:
            try:
                replies = cast(_XReadReply, await self._redis.xread({stream: last_id}, count=BATCH, block=1000))
            except (RedisError, OSError) as exc:
                self._outage("read stream", exc)
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
                continue
            attempt = 0
            self._recovered()
            for _, entries in replies or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    self._dispatch(stream.encode(), fields[b"m"])

    async def _listen_loop(self) -> None:
        channels = (self.key("control"), self.key("node", self.node_id))
        attempt = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                attempt = 0
                self._recovered()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                self._outage("subscribe", exc)
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis leaves PubSub.aclose unannotated

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        handler = self._handler
        assert handler is not None
        try:
            payload = orjson.loads(data)
            name = channel.decode()
            if name == self.key("publish"):
                if payload["o"] != self.node_id:
                    self.received += 1
                    handler.on_remote_publish(payload["s"], _publish_of(payload), payload["o"])
            elif name == self.key("control"):
                if payload["o"] != self.node_id:
                    if payload["k"] == "drop":
                        handler.on_remote_drop(payload["s"])
                    elif payload["k"] == "suspend":
                        handler.on_remote_suspend(payload["s"], bool(payload["v"]))
            elif payload.get("k") == "ack":
                handler.on_remote_ack(payload["s"], payload["id"])
            elif payload.get("k") == "handover":
                state = handler.on_handover_request(payload["s"], payload["c"])
                wire = None if state is None else self._durable_to_wire(state)
                self._send(
                    self.key("node", payload["r"]), {"k": "state", "s": payload["s"], "c": payload["c"], "state": wire}
                )
            elif payload.get("k") == "state":
                waiter = self._handovers.pop((payload["s"], payload["c"]), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(payload["state"])
        except Exception:
            logger.exception("engine: bad message on %r", channel)

    # ------------------------------------------------------------------ sessions

    async def create_session(self, record: SessionRecord) -> bool:
        """Store a new session; False if the name is taken on any node.

        Raises:
            EngineUnavailable: Redis cannot be reached.
        """
        key = self.key("session", record.name)
        fields = {
            "salt": record.salt,
            "digest": record.digest,
            "secret": record.secret_digest,
            "settings": orjson.dumps(record.settings),
            "suspended": b"1" if record.suspended else b"0",
        }
        try:
            if not await self._redis.hsetnx(key, "salt", fields["salt"]):
                return False
            await self._redis.hset(key, mapping=cast(Mapping[FieldT, EncodableT], fields))
        except (RedisError, OSError) as exc:
            self._outage("create session", exc)
            raise EngineUnavailable("session store unavailable, try again") from None
        return True

    async def load_session(self, name: str) -> SessionRecord | None:
        """A session another node created, or None (unknown, or half-written by a racing create).

        Raises:
            EngineUnavailable: Redis cannot be reached.
        """
        try:
            fields = cast(dict[bytes, bytes], await self._redis.hgetall(self.key("session", name)))
        except (RedisError, OSError) as exc:
            self._outage("load session", exc)
            raise EngineUnavailable("session store unavailable, try again") from None
        if b"settings" not in fields:
            return None
        return SessionRecord(
            name,
            fields[b"salt"],
            fields[b"digest"],
            fields[b"secret"],
            orjson.loads(fields[b"settings"]),
            fields.get(b"suspended") == b"1",
        )

    async def set_suspended(self, name: str, suspended: bool) -> None:
        """Record a suspension and announce it (the announcement waits out an outage).

        Raises:
            EngineUnavailable: Redis cannot be reached.
        """
        try:
            await self._redis.hset(self.key("session", name), "suspended", b"1" if suspended else b"0")
        except (RedisError, OSError) as exc:
            self._outage("suspend session", exc)
            raise EngineUnavailable("session store unavailable, try again") from None
        self.announce("suspend", name, suspended)

    async def drop_session(self, name: str) -> None:
        """Delete a session everywhere and announce it.

        Raises:
            EngineUnavailable: Redis cannot be reached.
        """
        try:
            await self._redis.delete(self.key("session", name))
        except (RedisError, OSError) as exc:
            self._outage("drop session", exc)
            raise EngineUnavailable("session store unavailable, try again") from None
        self.announce("drop", name)

    # ------------------------------------------------------------------ durable clients

    def _durable_key(self, session_name: str, client_id: str) -> str:
        return self.key("durable", session_name, client_id)

    def _soon(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def claim_durable(self, session_name: str, client_id: str) -> None:
        """Record, in the background, that a durable client now lives on this node."""
        self._soon(self._claim_durable(session_name, client_id))

    def release_durable(self, session_name: str, client_id: str) -> None:
        """Forget, in the background, the ownership record of a durable client that ended here."""
        self._soon(self._release_durable(session_name, client_id))

    async def _claim_durable(self, session_name: str, client_id: str) -> None:
        """Record that a durable client now lives on this node (best effort during an outage)."""
        try:
            await self._redis.set(self._durable_key(session_name, client_id), self.node_id)
        except (RedisError, OSError) as exc:
            self._outage("claim durable client", exc)

    async def _release_durable(self, session_name: str, client_id: str) -> None:
        """Forget the ownership record of a durable client that ended here."""
        key = self._durable_key(session_name, client_id)
        try:
            if await self._redis.get(key) == self.node_id.encode():
                await self._redis.delete(key)
        except (RedisError, OSError) as exc:
            self._outage("release durable client", exc)

    async def fetch_durable(self, session_name: str, client_id: str) -> DurableState | None:
        """Take a durable client over from the node that holds it; None if no node does (or answers)."""
        try:
            owner = cast(bytes | None, await self._redis.get(self._durable_key(session_name, client_id)))
        except (RedisError, OSError) as exc:
            self._outage("find durable client", exc)
            return None
        if owner is None or owner.decode() == self.node_id:
            return None
        waiter: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._handovers[(session_name, client_id)] = waiter
        self._send(
            self.key("node", owner.decode()), {"k": "handover", "s": session_name, "c": client_id, "r": self.node_id}
        )
        try:
            wire = await asyncio.wait_for(waiter, HANDOVER_TIMEOUT_S)
        except TimeoutError:
            logger.warning("engine: node %s did not hand over durable client %r in time", owner, client_id)
            return None
        finally:
            self._handovers.pop((session_name, client_id), None)
        return None if wire is None else self._durable_from_wire(wire)

    def _durable_to_wire(self, state: DurableState) -> dict[str, Any]:
        """A durable client's state as one node sends it to another (origins made absolute)."""
        messages = [
            {
                "id": held.message_id,
                "t": held.topic,
                "d": held.data,
                "h": held.hash,
                "ts": held.timestamp,
                "q": held.qos,
                "a": held.attempts,
                "sent": held.sent,
                "o": held.origin or self.node_id,
            }
            for held in state.held
        ]
        return {"filters": state.filters, "messages": messages}

    def _durable_from_wire(self, wire: dict[str, Any]) -> DurableState:
        """A durable client's state sent by another node (origins made relative to this node)."""
        held = [
            HeldMessage(
                str(item["id"]),
                str(item["t"]),
                str(item["d"]),
                item["h"],
                item["ts"],
                int(item["q"]),
                int(item["a"]),
                bool(item["sent"]),
                None if item["o"] == self.node_id else str(item["o"]),
            )
            for item in wire["messages"]
        ]
        return DurableState({str(name): int(qos) for name, qos in wire["filters"].items()}, held)


def _publish_of(fields: dict[str, Any]) -> Publish:
    """The publish another node forwarded (``RedisEngine.forward_publish``)."""
    return Publish(
        topic=fields["t"],
        data=fields["d"],
        message_id=fields["id"],
        hash=fields.get("h"),
        timestamp=fields.get("ts"),
        qos=int(fields.get("q", 1)),
        retain=bool(fields.get("r")),
    )
