"""The broker's own CPU per delivery, with no sockets: 1 publisher -> N subscribers, every delivery acked.

Frames go straight into ``Broker.receive`` from in-memory sinks, so the number is the broker layer
alone (codec, delivery, fan-out, acks), without picows, the outbox or the kernel: the part a change
in ``fastport/broker`` moves. Run it under ``valgrind --tool=callgrind`` at two round counts and
subtract, for an instruction count per delivery that does not depend on what else the machine does:

    python bench/inproc.py --rounds 20000            # CPU µs per delivery (time.process_time)
    valgrind --tool=callgrind python bench/inproc.py --rounds 1000   # then --rounds 3000; subtract

It prints one number: CPU µs per delivery. It reports, it never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson

from fastport.broker.connection import Connection
from fastport.broker.core import Broker
from fastport.config import SessionSettings


class MemorySink:
    """A ``Sink`` that keeps what it is sent (cleared by the caller)."""

    __slots__ = ("backlog", "frames", "is_open", "paused")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.is_open = True
        self.backlog = 0
        self.paused = False

    def send(self, payload: bytes) -> None:
        self.frames.append(payload)

    def send_binary(self, payload: bytes) -> None:
        self.frames.append(payload)

    def close(self, code: int, reason: str) -> None:
        self.is_open = False


async def _connected(broker: Broker, count: int) -> list[tuple[Connection, MemorySink]]:
    init = orjson.dumps({"type": "init", "sessionName": "bench", "password": "pw"})
    connections = []
    for index in range(count):
        sink = MemorySink()
        connection = broker.connect(sink, f"127.0.0.1:{index}")
        broker.receive(connection, init)
        connections.append((connection, sink))
    for _ in range(1000):
        if all(any(b"init_response" in frame for frame in sink.frames) for _, sink in connections):
            return connections
        await asyncio.sleep(0.01)
    raise RuntimeError("init was not answered within 10 s")


async def measure(rounds: int, subscribers: int) -> float:
    """CPU µs per delivery over ``rounds`` publishes to ``subscribers`` subscribers, each acked."""
    broker = Broker(asyncio.get_running_loop())
    await broker.admin.create("bench", "pw", SessionSettings())
    connections = await _connected(broker, subscribers + 1)
    subscribe = orjson.dumps({"type": "subscribe", "topic": "t"})
    for connection, _ in connections[1:]:
        broker.receive(connection, subscribe)
    publisher, publisher_sink = connections[0]
    publishes = [
        orjson.dumps({"type": "publish", "topic": "t", "data": "x" * 200, "messageId": f"m{i}"}) for i in range(rounds)
    ]
    acks = [orjson.dumps({"type": "ack", "messageId": f"m{i}"}) for i in range(rounds)]
    for _, sink in connections:
        sink.frames.clear()
    receive = broker.receive
    subscriber_side = connections[1:]
    start = time.process_time()
    for publish, ack in zip(publishes, acks, strict=True):
        receive(publisher, publish)
        for connection, sink in subscriber_side:
            receive(connection, ack)
            sink.frames.clear()
        publisher_sink.frames.clear()
    elapsed = time.process_time() - start
    broker.close()
    return elapsed / (rounds * subscribers) * 1e6


def main() -> None:
    """Parse the flags, measure, print CPU µs per delivery."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="publishes (default 20000)")
    parser.add_argument("--subscribers", type=int, default=50, help="subscribers per publish (default 50)")
    args = parser.parse_args()
    print(f"{asyncio.run(measure(args.rounds, args.subscribers)):.4f}")


if __name__ == "__main__":
    main()
