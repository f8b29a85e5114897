"""The benchmark's one load generator: picows + uvloop clients for fastport, MQTT 3.1.1 and NATS over WebSocket.

``bench/run.py`` starts it pinned to its own CPU, once per broker and run::

    python bench/loadgen.py --kind fastport --url ws://127.0.0.1:P/ --broker-pid PID \\
        --session bench --password pw --scenarios s1,s2,s3,s4 [...]

and reads one JSON object with every scenario's numbers from its stdout. Broker CPU time (utime + stime from
``/proc/PID/stat``) and RSS (``VmRSS`` from ``/proc/PID/status``) are read here, at the edges of each measured
window, so warm-up and set-up are not counted.

What each scenario measures (the same for the three protocols unless said):

- ``s1`` fan-out: 1 publisher, N subscribers on one topic, 256-byte payloads, at-least-once on (fastport: every
  subscriber acks every message; MQTT: QoS 1 both ways, subscribers PUBACK; NATS: core NATS, no acks exist). A
  message is complete when the broker confirmed it to the publisher (``publish_response`` / PUBACK; NATS: nothing)
  and every subscriber received it; the publisher keeps at most W messages incomplete (a closed loop: no
  broker queue grows, nothing is dropped).
- ``s2`` latency: N subscribers, a fixed publish rate for a fixed time, acks as in s1; publish-to-delivery
  latency from a monotonic timestamp in the payload (publisher and subscribers share this process's clock).
- ``s3`` acknowledged round trip with window W: the publisher's confirmation that the subscriber processed the
  message. fastport: publish -> message -> ack -> ``ack_received``. MQTT: QoS 1 publish -> delivery (PUBACK) ->
  the subscriber publishes a QoS 1 reply to the publisher's reply topic -> delivery to the publisher (PUBACK),
  since MQTT's own PUBACK to a publisher does not wait for any subscriber. NATS: request/reply (PUB with a
  reply subject, the subscriber PUBs the answer), fire-and-forget both ways.
- ``s4`` memory + ``s5`` storm: open N connections (at most C handshakes at once), each authenticated (fastport
  ``init``; MQTT CONNECT/CONNACK; NATS CONNECT + PING/PONG); the time of that phase gives connections/s (s5).
  Then each subscribes to its own topic; after a settle time the broker's RSS growth / N is the cost of one
  idle, authenticated, subscribed connection.

- ``s6`` cross-node fan-out: as ``s1`` (``--s6-window``, ``--subscribers``), but the payload carries the publish
  time and the subscribers alternate between ``--url`` (node A, where the publisher is) and ``--url-b`` (node B,
  another fastport joined to A through the Redis engine); without ``--url-b`` all are on A and the two halves are
  reported the same way. Reported: deliveries/s, publish-to-delivery p50/p99 per half, broker CPU of A + B per
  delivery (``--broker-pid-b``) and, with ``--aux-pid``, the CPU of that process (Redis) per delivery.
- ``s7`` publish cost: ``--durable N`` durable clients (``init`` with ``"clientId": "d<i>", "durable": true``)
  subscribe to the topic and disconnect, so every message is queued for N offline clients; then one publisher
  keeps W publishes unanswered (``--windows``) and each ``publish_response`` completes one: publishes/s and the
  publish -> ``publish_response`` time.

Acks (fastport ``ack``, MQTT PUBACK) are one frame per delivery, and the frames answering one read leave in one
``write`` (``Client.reply``), so the load generator does not spend a system call per delivery.

``--publish-cap R`` paces each publisher to at most R publishes/s (``Pacer``): fastport refuses publishes over its
per-connection publish rate limit and closes a connection that keeps trying.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOAD_SIZE = 256
RATE_LIMITED = 4005  # fastport's publish_response code when the per-connection publish rate limit refuses one
BACKOFF_S = 0.05  # pause after a refused publish, so the publisher stays under the limit's close threshold
PACER_BURST = 256
OP_TEXT, OP_BINARY = 0x1, 0x2
ZERO_MASK = b"\0\0\0\0"
now_ns = time.monotonic_ns


def broker_cpu_s(pid: int) -> float:
    """utime + stime of the broker process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def broker_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def make_payload(seq: int, sent_ns: int) -> bytes:
    """``seq sent_ns `` padded with x to PAYLOAD_SIZE bytes (ASCII, so it is valid JSON string content)."""
    head = b"%d %d " % (seq, sent_ns)
    return head + b"x" * (PAYLOAD_SIZE - len(head))


def parse_payload(data: bytes | str) -> tuple[int, int]:
    if isinstance(data, str):
        seq, sent, _ = data.split(" ", 2)
    else:
        seq, sent, _ = data.split(b" ", 2)
    return int(seq), int(sent)


def percentiles(samples: list[int]) -> dict[str, float]:
    """p50/p99/p99.9 of nanosecond samples, in microseconds."""
    if not samples:
        return {}
    samples.sort()
    n = len(samples)

    def pick(q: float) -> float:
        return samples[min(n - 1, int(q * n))] / 1000.0

    return {"p50_us": pick(0.50), "p99_us": pick(0.99), "p999_us": pick(0.999), "samples": n}


# -- protocol clients ---------------------------------------------------------------------------------------------
#
# Every client is a picows WSListener with the same surface for the scenarios:
#   await c.start(name)          connect + authenticate
#   await c.subscribe(topic)     subscribe (and wait for the broker's answer)
#   c.publish(topic, payload, key, qos=1, reply=None)
#   c.on_message(payload, topic) callback (subscriber side; acks are sent by the client itself when auto_ack)
#   c.on_confirm(key)            callback: the broker confirmed this publish (publish_response / PUBACK)
#   c.on_acked(key)              callback (fastport only): ack_received


def _ignore(*_args: Any) -> None:
    return None


class Client(WSListener):  # type: ignore[misc]
    url = ""
    subprotocol: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.on_message: Callable[[bytes | str, Any], None] = _ignore
        self.on_confirm: Callable[[Any], None] = _ignore
        self.on_acked: Callable[[Any], None] = _ignore
        self.on_reject: Callable[[Any], None] = _ignore  # the broker refused a publish (fastport: rate limit)
        self.rejected = 0
        self.auto_ack = True
        self.errors = 0
        self.error_samples: list[Any] = []
        self._waiter: asyncio.Future[Any] | None = None
        self.closed = False
        self._replies: list[bytes] = []

    @classmethod
    async def open(cls, name: str) -> Client:
        headers = {"Sec-WebSocket-Protocol": cls.subprotocol} if cls.subprotocol else None
        _, client = await ws_connect(
            cls, cls.url, extra_headers=headers, read_buffer_init_size=4096, websocket_handshake_timeout=30
        )
        await client.start(name)
        return client

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.on_frame(transport, frame)
        if frame.last_in_buffer and self._replies:
            transport.underlying_transport.write(b"".join(self._replies))
            self._replies.clear()

    def on_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        raise NotImplementedError

    def reply(self, opcode: int, payload: bytes) -> None:
        """Queue an ack (fastport ``ack``, MQTT PUBACK) written with the others of the same read, in one write.

        A client that answers every frame with its own ``write`` spends a system call per delivery and
        becomes the bottleneck of a fan-out run; here the frames answering one read leave together (as
        they would from any client with an output buffer). The frame is masked, as a client's must be
        (RFC 6455 §5.3), with a zero key, so the payload needs no XOR.
        """
        length = len(payload)
        if length < 126:
            header = bytes((0x80 | opcode, 0x80 | length)) + ZERO_MASK
        elif length < 0x10000:
            header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big") + ZERO_MASK
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big") + ZERO_MASK
        self._replies.append(header)
        self._replies.append(payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("disconnected"))

    async def _wait(self, timeout: float = 30.0) -> Any:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    def _resolve(self, value: Any) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(value)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.disconnect(graceful=False)

    async def start(self, name: str) -> None:
        raise NotImplementedError

    async def subscribe(self, topic: str) -> None:
        raise NotImplementedError

    def publish(self, topic: str, payload: bytes, key: Any, qos: int = 1, reply: str | None = None) -> None:
        raise NotImplementedError


class FastportClient(Client):
    session = "bench"
    password = "pw"

    def __init__(self) -> None:
        super().__init__()
        self._unanswered: collections.deque[str] = collections.deque()

    def on_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        msg = orjson.loads(frame.get_payload_as_memoryview())
        kind = msg.get("type")
        if kind == "message":
            if self.auto_ack:
                self.reply(OP_TEXT, b'{"type":"ack","messageId":%s}' % orjson.dumps(msg["messageId"]))
            self.on_message(msg["data"], msg)
        elif kind == "publish_response":
            # Answers come in publish order; a rate-limit refusal carries no messageId, so take it from the queue.
            key = self._unanswered.popleft() if self._unanswered else msg.get("messageId")
            if msg.get("success"):
                self.on_confirm(msg["messageId"])
            elif msg.get("code") == RATE_LIMITED:
                self.rejected += 1
                self.on_reject(key)
            else:
                self.errors += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(msg)
        elif kind == "ack_received":
            self.on_acked(msg["messageId"])
        elif kind in ("init_response", "subscribe_response"):
            if not msg.get("success"):
                self.errors += 1
            self._resolve(msg)
        elif kind == "error":
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(msg)

    async def start(self, name: str) -> None:
        assert self.transport is not None
        self.transport.send(
            WSMsgType.TEXT, orjson.dumps({"type": "init", "sessionName": self.session, "password": self.password})
        )
        answer = await self._wait()
        if not answer.get("success"):
            raise RuntimeError(f"init failed: {answer}")

    async def subscribe(self, topic: str) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps({"type": "subscribe", "topic": topic}))
        answer = await self._wait()
        if not answer.get("success"):
            raise RuntimeError(f"subscribe failed: {answer}")

    def publish(self, topic: str, payload: bytes, key: Any, qos: int = 1, reply: str | None = None) -> None:
        assert self.transport is not None
        # The payload is ASCII without quotes or backslashes, so it goes into the JSON string as is.
        self._unanswered.append(str(key))
        self.transport.send(
            WSMsgType.TEXT,
            b'{"type":"publish","topic":"%s","data":"%s","messageId":"%s"}'
            % (topic.encode(), payload, str(key).encode()),
        )


class MQTTClient(Client):
    subprotocol = "mqtt"

    def __init__(self) -> None:
        super().__init__()
        self._parser = mqtt.Parser()
        self._packet_ids = itertools.cycle(range(1, 65536))
        self._pending: dict[int, Any] = {}  # packet id -> key of an unconfirmed QoS 1 publish

    def on_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.BINARY and frame.msg_type != WSMsgType.CONTINUATION:
            return
        for kind, flags, body in self._parser.feed(frame.get_payload_as_bytes()):
            if kind == mqtt.PUBLISH:
                topic, packet_id, payload = mqtt.parse_publish(flags, body)
                if packet_id and self.auto_ack:
                    self.reply(OP_BINARY, mqtt.puback(packet_id))
                self.on_message(payload, topic)
            elif kind == mqtt.PUBACK:
                key = self._pending.pop(mqtt.packet_id_of(body), None)
                if key is not None:
                    self.on_confirm(key)
            elif kind == mqtt.CONNACK or kind == mqtt.SUBACK:
                self._resolve(body)

    async def start(self, name: str) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.BINARY, mqtt.connect(name))
        body = await self._wait()
        if body[1] != 0:
            raise RuntimeError(f"CONNACK return code {body[1]}")

    async def subscribe(self, topic: str) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.BINARY, mqtt.subscribe(next(self._packet_ids), topic, 1))
        body = await self._wait()
        if body[2] == 0x80:
            raise RuntimeError("SUBACK failure")

    def publish(self, topic: str, payload: bytes, key: Any, qos: int = 1, reply: str | None = None) -> None:
        assert self.transport is not None
        packet_id = 0
        if qos:
            packet_id = next(self._packet_ids)
            self._pending[packet_id] = key
        self.transport.send(WSMsgType.BINARY, mqtt.publish(topic, payload, qos, packet_id))


class NATSClient(Client):
    """Core NATS text protocol over WebSocket (binary frames; the server may split or join protocol lines)."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = b""
        self._sids = itertools.count(1)
        self._info = asyncio.get_event_loop().create_future()

    def on_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type not in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            return
        buffer = self._buffer + frame.get_payload_as_bytes() if self._buffer else frame.get_payload_as_bytes()
        pos, end = 0, len(buffer)
        while pos < end:
            eol = buffer.find(b"\r\n", pos)
            if eol < 0:
                break
            if buffer.startswith(b"MSG ", pos):
                parts = buffer[pos + 4 : eol].split(b" ")
                size = int(parts[-1])
                start = eol + 2
                if start + size + 2 > end:
                    break
                self.on_message(buffer[start : start + size], parts)
                pos = start + size + 2
                continue
            line = buffer[pos:eol]
            pos = eol + 2
            if line == b"PING":
                transport.send(WSMsgType.BINARY, b"PONG\r\n")
            elif line == b"PONG":
                self._resolve(True)
            elif line.startswith(b"INFO "):
                if not self._info.done():
                    self._info.set_result(line)
            elif line.startswith(b"-ERR"):
                self.errors += 1
        self._buffer = buffer[pos:]

    async def start(self, name: str) -> None:
        assert self.transport is not None
        await asyncio.wait_for(self._info, 30)
        connect = orjson.dumps(
            {
                "verbose": False,
                "pedantic": False,
                "protocol": 1,
                "name": name,
                "lang": "python",
                "version": "0",
                "headers": False,
            }
        )
        self.transport.send(WSMsgType.BINARY, b"CONNECT " + connect + b"\r\nPING\r\n")
        await self._wait()

    async def subscribe(self, topic: str) -> None:
        assert self.transport is not None
        subject = topic.replace("/", ".").replace("#", ">")
        self.transport.send(WSMsgType.BINARY, b"SUB %s %d\r\nPING\r\n" % (subject.encode(), next(self._sids)))
        await self._wait()

    def publish(self, topic: str, payload: bytes, key: Any, qos: int = 1, reply: str | None = None) -> None:
        assert self.transport is not None
        subject = topic.replace("/", ".").encode()
        if reply:
            head = b"PUB %s %s %d\r\n" % (subject, reply.replace("/", ".").encode(), len(payload))
        else:
            head = b"PUB %s %d\r\n" % (subject, len(payload))
        self.transport.send(WSMsgType.BINARY, head + payload + b"\r\n")


CLIENTS: dict[str, type[Client]] = {"fastport": FastportClient, "mqtt": MQTTClient, "nats": NATSClient}


# -- scenarios --------------------------------------------------------------------------------------------------


class Pacer:
    """Lets a publisher's window refill at most ``rate`` publishes/s (0: unlimited) and backs off after refusals.

    fastport refuses publishes over its per-connection publish rate limit (and closes a connection that keeps
    trying), so its publisher is paced just under that limit; a refusal still pauses refills for BACKOFF_S.
    """

    def __init__(self, fill: Callable[[], None], rate: float) -> None:
        self.fill = fill
        self.rate = rate
        self.loop = asyncio.get_running_loop()
        self.tokens = min(PACER_BURST, rate) if rate else 0.0
        self.updated = self.loop.time()
        self.until = 0.0
        self.scheduled = False

    def allow(self) -> bool:
        now = self.loop.time()
        if now < self.until:
            self._resume_at(self.until)
            return False
        if not self.rate:
            return True
        self.tokens = min(float(PACER_BURST), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self._resume_at(now + (1.0 - self.tokens) / self.rate)
        return False

    def refused(self) -> None:
        self.until = self.loop.time() + BACKOFF_S
        self._resume_at(self.until)

    def _resume_at(self, when: float) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_at(when + 0.0005, self._resume)

    def _resume(self) -> None:
        self.scheduled = False
        self.fill()


class Window:
    """Times a measured window: wall clock, broker CPU (summed over ``extra`` broker PIDs too), this process's CPU,
    and the CPU of an ``aux`` process (Redis in s6) separately."""

    def __init__(self, pid: int, extra: tuple[int, ...] = (), aux: int = 0) -> None:
        self.pid = pid
        self.pids = (pid, *(p for p in extra if p))
        self.aux = aux

    def _cpu(self) -> float:
        return sum(broker_cpu_s(pid) for pid in self.pids)

    def begin(self) -> None:
        self.wall0, self.cpu0, self.own0 = time.perf_counter(), self._cpu(), time.process_time()
        self.aux0 = broker_cpu_s(self.aux) if self.aux else 0.0

    def end(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        result = {
            "wall_s": wall,
            "broker_cpu_s": self._cpu() - self.cpu0,
            "loadgen_cpu_pct": 100.0 * (time.process_time() - self.own0) / wall,
        }
        if self.aux:
            result["aux_cpu_s"] = broker_cpu_s(self.aux) - self.aux0
        return result


async def open_many(cls: type[Client], count: int, prefix: str) -> list[Client]:
    return [await cls.open(f"{prefix}-{os.getpid()}-{i}") for i in range(count)]


def close_all(clients: list[Client]) -> None:
    for client in clients:
        client.close()


async def scenario_fanout(cls: type[Client], args: argparse.Namespace, tag: str) -> dict[str, Any]:
    topic = f"bench/{tag}/fanout"
    subscribers = await open_many(cls, args.subscribers, f"{tag}-sub")
    for sub in subscribers:
        await sub.subscribe(topic)
    publisher = await cls.open(f"{tag}-pub")
    needed = args.subscribers + (0 if cls is NATSClient else 1)  # deliveries + the broker's confirmation
    remaining: dict[int, int] = {}
    counters = {"deliveries": 0, "completed": 0}
    seqs = itertools.count()
    running = True

    def fill() -> None:
        while running and len(remaining) < args.window and pacer.allow():
            seq = next(seqs)
            remaining[seq] = needed
            publisher.publish(topic, make_payload(seq, 0), f"{tag}-{seq}")

    def done(seq: int) -> None:
        left = remaining.get(seq)
        if left is None:
            return
        if left == 1:
            del remaining[seq]
            counters["completed"] += 1
            fill()
        else:
            remaining[seq] = left - 1

    def on_message(data: bytes | str, _meta: Any) -> None:
        counters["deliveries"] += 1
        done(parse_payload(data)[0])

    for sub in subscribers:
        sub.on_message = on_message
    pacer = Pacer(fill, args.publish_cap)

    def refused(key: str) -> None:
        remaining.pop(int(key.rsplit("-", 1)[1]), None)
        pacer.refused()

    publisher.on_confirm = lambda key: done(int(str(key).rsplit("-", 1)[1]) if isinstance(key, str) else key)
    publisher.on_reject = refused
    fill()
    await asyncio.sleep(args.warmup)
    window = Window(args.broker_pid)
    start = dict(counters)
    window.begin()
    await asyncio.sleep(args.duration)
    result = window.end()
    deliveries = counters["deliveries"] - start["deliveries"]
    running = False
    await asyncio.sleep(0.5)
    errors = sum(c.errors for c in subscribers) + publisher.errors
    close_all([*subscribers, publisher])
    result.update(
        deliveries=deliveries,
        deliveries_per_s=deliveries / result["wall_s"],
        messages_per_s=(counters["completed"] - start["completed"]) / result["wall_s"],
        cpu_us_per_delivery=1e6 * result["broker_cpu_s"] / max(1, deliveries),
        stalled=len(remaining),
        errors=errors,
        rejected=publisher.rejected,
        window=args.window,
        subscribers=args.subscribers,
    )
    return result


async def scenario_latency(cls: type[Client], args: argparse.Namespace, tag: str) -> dict[str, Any]:
    topic = f"bench/{tag}/latency"
    subscribers = await open_many(cls, args.latency_subscribers, f"{tag}-lsub")
    for sub in subscribers:
        await sub.subscribe(topic)
    publisher = await cls.open(f"{tag}-lpub")
    samples: list[int] = []
    recording = False

    def on_message(data: bytes | str, _meta: Any) -> None:
        if recording:
            samples.append(now_ns() - parse_payload(data)[1])

    for sub in subscribers:
        sub.on_message = on_message
    loop = asyncio.get_running_loop()
    seqs = itertools.count()
    rate = args.rate
    total_s = args.warmup + args.latency_duration
    started = loop.time()
    sent = 0
    window = Window(args.broker_pid)
    while True:  # bounded by total_s
        elapsed = loop.time() - started
        if elapsed >= total_s:
            break
        if not recording and elapsed >= args.warmup:
            recording = True
            window.begin()
            first_sent = sent
        due = int(elapsed * rate) + 1
        while sent < due:
            seq = next(seqs)
            publisher.publish(topic, make_payload(seq, now_ns()), f"{tag}-{seq}")
            sent += 1
        await asyncio.sleep(max(0.0, started + due / rate - loop.time()))
    result = window.end()
    recording = False
    await asyncio.sleep(0.3)
    close_all([*subscribers, publisher])
    deliveries = len(samples)
    result.update(percentiles(samples))
    result.update(
        rate=rate,
        subscribers=args.latency_subscribers,
        deliveries=deliveries,
        expected=(sent - first_sent) * args.latency_subscribers,
        cpu_us_per_delivery=1e6 * result["broker_cpu_s"] / max(1, deliveries),
    )
    return result


SEQ_STRIDE = 1_000_000_000  # seq = publisher index * SEQ_STRIDE + n, so a reply finds its publisher


async def scenario_roundtrip(
    cls: type[Client], args: argparse.Namespace, tag: str, window_size: int, publishers: int = 1
) -> dict[str, Any]:
    """S3; with ``publishers`` > 1 the window is split evenly over that many publisher connections."""
    topic = f"bench/{tag}/rt"
    reply_topics = [f"bench/{tag}/reply{i}" for i in range(publishers)]
    subscriber = await cls.open(f"{tag}-rsub")
    await subscriber.subscribe(topic)
    pubs = [await cls.open(f"{tag}-rpub{i}") for i in range(publishers)]
    if cls is not FastportClient:
        for pub, reply_topic in zip(pubs, reply_topics, strict=True):
            await pub.subscribe(reply_topic)
    per_publisher = max(1, window_size // publishers)
    sent_at: list[dict[int, int]] = [{} for _ in range(publishers)]
    samples: list[int] = []
    counters = {"completed": 0}
    running = True
    recording = False

    def make_fill(i: int) -> Callable[[], None]:
        pub, pending, reply_topic = pubs[i], sent_at[i], reply_topics[i]
        seqs = itertools.count(i * SEQ_STRIDE)

        def fill() -> None:
            while running and len(pending) < per_publisher and pacers[i].allow():
                seq = next(seqs)
                pending[seq] = now_ns()
                pub.publish(topic, make_payload(seq, 0), f"{tag}-{seq}", reply=reply_topic)

        return fill

    fills = [make_fill(i) for i in range(publishers)]
    pacers = [Pacer(fill, args.publish_cap) for fill in fills]

    def complete(seq: int) -> None:
        i = seq // SEQ_STRIDE
        started = sent_at[i].pop(seq, None)
        if started is None:
            return
        counters["completed"] += 1
        if recording:
            samples.append(now_ns() - started)
        fills[i]()

    def seq_of(key: str) -> int:
        return int(key.rsplit("-", 1)[1])

    for i, pub in enumerate(pubs):

        def refused(key: str, i: int = i) -> None:
            sent_at[i].pop(seq_of(key), None)
            pacers[i].refused()

        pub.on_reject = refused
        if cls is FastportClient:
            pub.on_acked = lambda key: complete(seq_of(key))
        else:
            pub.on_message = lambda data, _meta: complete(parse_payload(data)[0])
    if cls is not FastportClient:
        # The subscriber answers on its publisher's reply topic (MQTT QoS 1 / NATS reply subject).
        def answer(data: bytes | str, _meta: Any) -> None:
            seq = parse_payload(data)[0]
            subscriber.publish(reply_topics[seq // SEQ_STRIDE], make_payload(seq, 0), ("reply", seq))

        subscriber.on_message = answer
    for fill in fills:
        fill()
    await asyncio.sleep(args.warmup)
    window = Window(args.broker_pid)
    start = counters["completed"]
    recording = True
    window.begin()
    await asyncio.sleep(args.roundtrip_duration)
    result = window.end()
    recording = False
    done = counters["completed"] - start
    running = False
    await asyncio.sleep(0.3)
    close_all([subscriber, *pubs])
    result["errors"] = subscriber.errors + sum(pub.errors for pub in pubs)
    result["rejected"] = sum(pub.rejected for pub in pubs)
    result["stalled"] = sum(len(pending) for pending in sent_at)
    result.update(percentiles(samples))
    result.update(
        window=window_size,
        publishers=publishers,
        messages=done,
        messages_per_s=done / result["wall_s"],
        cpu_us_per_message=1e6 * result["broker_cpu_s"] / max(1, done),
    )
    return result


async def scenario_crossnode(args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """S6: S1's closed loop with timestamps; subscriber i on node B when i is odd and ``--url-b`` is given."""
    topic = f"bench/{tag}/cross"
    node_b: type[Client] = FastportClient
    if args.url_b:
        node_b = type("FastportClientB", (FastportClient,), {"url": args.url_b})
    subscribers: list[Client] = [
        await (node_b if i % 2 else FastportClient).open(f"{tag}-xsub{i}") for i in range(args.subscribers)
    ]
    for sub in subscribers:
        await sub.subscribe(topic)
    await asyncio.sleep(0.5)  # let node B's subscriptions reach the engine before the first publish
    publisher = await FastportClient.open(f"{tag}-xpub")
    needed = args.subscribers + 1
    remaining: dict[int, int] = {}
    counters = {"deliveries": 0, "completed": 0}
    samples: tuple[list[int], list[int]] = ([], [])
    seqs = itertools.count()
    state = {"running": True, "recording": False}

    def fill() -> None:
        while state["running"] and len(remaining) < args.s6_window and pacer.allow():
            seq = next(seqs)
            remaining[seq] = needed
            publisher.publish(topic, make_payload(seq, now_ns()), f"{tag}-{seq}")

    def done(seq: int) -> None:
        left = remaining.get(seq)
        if left is None:
            return
        if left == 1:
            del remaining[seq]
            counters["completed"] += 1
            fill()
        else:
            remaining[seq] = left - 1

    def make_on_message(half: list[int]) -> Callable[[bytes | str, Any], None]:
        def on_message(data: bytes | str, _meta: Any) -> None:
            seq, sent = parse_payload(data)
            counters["deliveries"] += 1
            if state["recording"]:
                half.append(now_ns() - sent)
            done(seq)

        return on_message

    for i, sub in enumerate(subscribers):
        sub.on_message = make_on_message(samples[i % 2])
    pacer = Pacer(fill, args.publish_cap)

    def refused(key: str) -> None:
        remaining.pop(int(key.rsplit("-", 1)[1]), None)
        pacer.refused()

    publisher.on_confirm = lambda key: done(int(str(key).rsplit("-", 1)[1]))
    publisher.on_reject = refused
    fill()
    await asyncio.sleep(args.warmup)
    window = Window(args.broker_pid, (args.broker_pid_b,), args.aux_pid)
    start = dict(counters)
    state["recording"] = True
    window.begin()
    await asyncio.sleep(args.duration)
    result = window.end()
    state["recording"] = False
    deliveries = counters["deliveries"] - start["deliveries"]
    state["running"] = False
    await asyncio.sleep(0.5)
    errors = sum(c.errors for c in subscribers) + publisher.errors
    close_all([*subscribers, publisher])
    for name, half in (("a", samples[0]), ("b", samples[1])):
        result.update({f"{name}_{key}": value for key, value in percentiles(half).items()})
    result.update(
        deliveries=deliveries,
        deliveries_per_s=deliveries / result["wall_s"],
        messages_per_s=(counters["completed"] - start["completed"]) / result["wall_s"],
        cpu_us_per_delivery=1e6 * result["broker_cpu_s"] / max(1, deliveries),
        stalled=len(remaining),
        errors=errors,
        rejected=publisher.rejected,
        window=args.s6_window,
        subscribers=args.subscribers,
        cross_node=bool(args.url_b),
    )
    if args.aux_pid:
        result["aux_cpu_us_per_delivery"] = 1e6 * result["aux_cpu_s"] / max(1, deliveries)
    return result


async def open_durable(client_id: str) -> FastportClient:
    """A fastport client that inits with ``clientId`` and ``"durable": true``."""
    client: Any
    _, client = await ws_connect(
        FastportClient, FastportClient.url, read_buffer_init_size=4096, websocket_handshake_timeout=30
    )
    assert client.transport is not None
    client.transport.send(
        WSMsgType.TEXT,
        orjson.dumps(
            {
                "type": "init",
                "sessionName": FastportClient.session,
                "password": FastportClient.password,
                "clientId": client_id,
                "durable": True,
            }
        ),
    )
    answer = await client._wait()
    if not answer.get("success"):
        raise RuntimeError(f"durable init failed: {answer}")
    durable: FastportClient = client
    return durable


async def scenario_store(args: argparse.Namespace, tag: str, window_size: int) -> dict[str, Any]:
    """S7: publish -> publish_response with ``window_size`` unanswered, ``args.durable`` offline durable clients."""
    topic = f"bench/{tag}/store"
    durable: list[Client] = [await open_durable(f"d{i}") for i in range(args.durable)]
    for client in durable:
        await client.subscribe(topic)
    close_all(durable)  # the connections drop; the broker keeps each client's filter and queues for it
    await asyncio.sleep(0.5)
    publisher = await FastportClient.open(f"{tag}-spub")
    pending: dict[int, int] = {}
    samples: list[int] = []
    counters = {"completed": 0, "delivered_to": 0}
    state = {"running": True, "recording": False}
    seqs = itertools.count()

    def fill() -> None:
        while state["running"] and len(pending) < window_size and pacer.allow():
            seq = next(seqs)
            pending[seq] = now_ns()
            publisher.publish(topic, make_payload(seq, 0), f"{tag}-{seq}")

    def confirmed(key: Any) -> None:
        started = pending.pop(int(str(key).rsplit("-", 1)[1]), None)
        if started is None:
            return
        counters["completed"] += 1
        if state["recording"]:
            samples.append(now_ns() - started)
        fill()

    def refused(key: str) -> None:
        pending.pop(int(key.rsplit("-", 1)[1]), None)
        pacer.refused()

    pacer = Pacer(fill, args.publish_cap)
    publisher.on_confirm = confirmed
    publisher.on_reject = refused
    fill()
    await asyncio.sleep(args.warmup)
    window = Window(args.broker_pid)
    start = counters["completed"]
    state["recording"] = True
    window.begin()
    await asyncio.sleep(args.roundtrip_duration)
    result = window.end()
    state["recording"] = False
    done = counters["completed"] - start
    state["running"] = False
    await asyncio.sleep(0.5)
    close_all([publisher])
    result.update(percentiles(samples))
    result.update(
        window=window_size,
        durable=args.durable,
        publishes=done,
        publishes_per_s=done / result["wall_s"],
        cpu_us_per_publish=1e6 * result["broker_cpu_s"] / max(1, done),
        errors=publisher.errors,
        rejected=publisher.rejected,
        stalled=len(pending),
        rss_mib=broker_rss_kib(args.broker_pid) / 1024,
    )
    return result


async def scenario_connections(cls: type[Client], args: argparse.Namespace, tag: str) -> dict[str, Any]:
    count, limit = args.connections, asyncio.Semaphore(args.concurrency)
    clients: list[Client] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with limit:
            try:
                clients.append(await cls.open(f"{tag}-idle-{os.getpid()}-{i}"))
            except Exception:  # noqa: BLE001 - counted and reported
                failures += 1

    gc.collect()
    await asyncio.sleep(1.0)
    rss_before = broker_rss_kib(args.broker_pid)
    window = Window(args.broker_pid)
    window.begin()
    await asyncio.gather(*(one(i) for i in range(count)))
    storm = window.end()
    for i, client in enumerate(clients):
        await client.subscribe(f"idle/{tag}/{i}")
    await asyncio.sleep(args.settle)
    rss_after = broker_rss_kib(args.broker_pid)
    opened = len(clients)
    if args.hold_dir:  # bench/memprofile.py snapshots the broker's heap while the connections are open
        # A file handshake with bench/memprofile.py, another process: polling is the protocol, and an empty
        # file plus a few stat calls a second in the load generator cost the measurement nothing.
        ready, done = os.path.join(args.hold_dir, "ready"), os.path.join(args.hold_dir, "done")
        open(ready, "w").close()  # noqa: ASYNC230
        deadline = time.monotonic() + 300
        while not os.path.exists(done) and os.path.isdir(args.hold_dir) and time.monotonic() < deadline:  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.1)
    close_all(clients)
    await asyncio.sleep(1.0)
    return {
        "connections": opened,
        "failures": failures,
        "storm_per_s": opened / storm["wall_s"],
        "storm_wall_s": storm["wall_s"],
        "storm_cpu_us_per_connection": 1e6 * storm["broker_cpu_s"] / max(1, opened),
        "storm_loadgen_cpu_pct": storm["loadgen_cpu_pct"],
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "kib_per_connection": (rss_after - rss_before) / max(1, opened),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cls = CLIENTS[args.kind]
    cls.url = args.url
    if cls is FastportClient:
        FastportClient.session, FastportClient.password = args.session, args.password
    tag = f"r{os.getpid()}"
    results: dict[str, Any] = {}
    for name in args.scenarios.split(","):
        # No collector pauses inside a measured window (each is bounded in time); collect between scenarios.
        gc.collect()
        gc.disable()
        if name == "s1":
            results["s1"] = await scenario_fanout(cls, args, f"{tag}f")
        elif name == "s2":
            results["s2"] = await scenario_latency(cls, args, f"{tag}l")
        elif name == "s3":
            results["s3"] = {str(w): await scenario_roundtrip(cls, args, f"{tag}w{w}", w) for w in args.windows}
            if args.split_publishers > 1:
                w, n = max(args.windows), args.split_publishers
                results["s3"][f"{w}x{n}"] = await scenario_roundtrip(cls, args, f"{tag}w{w}x{n}", w, n)
        elif name == "s6":
            results["s6"] = await scenario_crossnode(args, f"{tag}x")
        elif name == "s7":
            results["s7"] = {str(w): await scenario_store(args, f"{tag}s{w}", w) for w in args.windows}
        elif name in ("s4", "s5"):
            if "s4" not in results:
                results["s4"] = await scenario_connections(cls, args, tag)
        else:
            raise SystemExit(f"unknown scenario {name!r}")
        gc.enable()
        await asyncio.sleep(0.5)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="fastport benchmark load generator (one process)")
    parser.add_argument("--kind", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--broker-pid", type=int, required=True)
    parser.add_argument("--session", default="bench")
    parser.add_argument("--password", default="pw")
    parser.add_argument("--scenarios", default="s1,s2,s3,s4")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0, help="s1 measured seconds")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--window", type=int, default=256, help="s1 publish window")
    parser.add_argument("--latency-subscribers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--latency-duration", type=float, default=5.0)
    parser.add_argument("--windows", type=lambda s: [int(w) for w in s.split(",")], default=[1, 64])
    parser.add_argument("--roundtrip-duration", type=float, default=3.0)
    parser.add_argument(
        "--split-publishers",
        type=int,
        default=8,
        help="s3: also run the largest window split over this many publishers (1: don't)",
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument(
        "--publish-cap",
        type=float,
        default=0.0,
        help="s1/s3: at most this many publishes/s per publisher connection (0: no cap)",
    )
    parser.add_argument("--url-b", default="", help="s6: node B's URL (another fastport on the same Redis engine)")
    parser.add_argument("--broker-pid-b", type=int, default=0, help="s6: node B's PID (its CPU counts as broker CPU)")
    parser.add_argument("--aux-pid", type=int, default=0, help="s6: also report this process's CPU (Redis)")
    parser.add_argument("--s6-window", type=int, default=64, help="s6 publish window")
    parser.add_argument("--durable", type=int, default=0, help="s7: offline durable clients subscribed to the topic")
    parser.add_argument("--hold-dir", default="", help="s4: touch DIR/ready, keep the connections until DIR/done")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = uvloop.run(main_async(args))
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
