"""The client's at-least-once promise, checked where the application sees it: at its callback (issue #16, item 2).

Real ``fastport.client.Client``s talk to a real broker (in-process, SQLite store) through a TCP proxy the test
breaks on purpose (``tcpproxy.TcpProxy``). A seeded ``random.Random`` picks a fixed number of steps: publish a
batch, cut every connection, stall and resume the bytes, close a durable subscriber and come back with the same
``client_id`` (the way docs/client.md shows: ``get`` right after ``init``, with publishes made while it was away),
cut new connections during their WebSocket handshake, restart the broker on the same SQLite file and port.

Every message carries a unique id as its payload. At the end, after a bounded settle with everything reconnected,
each (durable subscriber, message) pair is classified at the application callback:

* **lost**: a message whose ``emit(wait_ack=True)`` returned (confirmed) never reached the callback;
* **duplicated**: one ``Client`` instance handed the same message to its callback twice (its dedupe window failed);
* **unexpected**: the callback got a payload nobody emitted to that filter;
* **stalled**: a reconnect (or a first connect) took longer than ``RECONNECT_BOUND_S`` although the broker was up.

All four must be zero. A new instance of a durable client (closed, then opened again) starts with an empty dedupe
window, so a message it gets again after its predecessor took it is counted apart (``redelivered_across_reopen``),
as at-least-once allows: the broker redelivers what it holds unacked. The model closes a subscriber only while it
is connected, so that only happens when an ack of the old instance never left it.

``FASTPORT_MODEL_SEED`` and ``FASTPORT_MODEL_STEPS`` override the seed and the number of steps, to explore.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastport_client_helpers import SessionFactory, http
from picows import WSError
from tcpproxy import TcpProxy

from fastport.client import (
    AckTimeout,
    Client,
    ConnectionClosed,
    ConnectionState,
    PublishResult,
    ReconnectPolicy,
)
from fastport.config import ServerConfig
from fastport.server.app import FastportServer

SEED = int(os.environ.get("FASTPORT_MODEL_SEED", "16"))
STEPS = int(os.environ.get("FASTPORT_MODEL_STEPS", "28"))
TOKEN = "m" * 32
KEY = base64.b64encode(b"fastport-model-test-key-32-bytes").decode()
OTHER_KEY = base64.b64encode(b"another-key-nobody-else-uses-32b").decode()
FILTER = "m/#"

#: Small backoff, so a lost connection costs tenths of a second, not seconds.
FAST = ReconnectPolicy(initial_delay_s=0.05, max_delay_s=0.3, jitter=0.1)
#: What a client may wait for the handshake and ``init_response``: longer than every bound below, so a
#: connection lost during the handshake and only noticed at this timeout shows as a stall.
REQUEST_TIMEOUT_S = 6.0
#: A reconnect with the broker up, through at most a few cut handshakes, takes well under this.
RECONNECT_BOUND_S = 2.5
#: Publishers re-send every half second, ten times, before ``AckTimeout``.
PUBLISH_RETRY_S, PUBLISH_RETRIES = 0.5, 10
#: After the last step: wait this long for the emits still running, then for every confirmed message to arrive.
EMIT_SETTLE_S, DELIVERY_SETTLE_S, QUIET_S = 7.0, 4.0, 0.3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sent:
    """One emitted message and how its ``emit`` ended."""

    message_id: str
    topic: str
    step: int
    noise: bool  # on a topic no subscriber's filter matches
    outcome: str = "pending"  # confirmed, or the exception's name, "cancelled" or "hung"
    result: PublishResult | None = None


@dataclass
class Durable:
    """A durable subscriber: one client_id, a ``Client`` instance per (re)open, and what its callbacks got."""

    client_id: str
    client: Client | None = None
    instance: int = 0
    #: (instance, payload) in arrival order, as the application callback saw them.
    received: list[tuple[int, str | bytes]] = field(default_factory=list)
    #: The instance whose ``close()`` was called (its callbacks should not run any more), and what they still got.
    closing: int = 0
    after_close: list[str | bytes] = field(default_factory=list)


@dataclass
class Report:
    ok: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    stalled: int = 0
    redelivered_across_reopen: int = 0
    delivered_after_close: int = 0
    unconfirmed_missing: int = 0
    unconfirmed_delivered: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.unexpected or self.stalled)

    def counts(self) -> dict[str, int]:
        names = ("ok", "lost", "duplicated", "unexpected", "stalled", "redelivered_across_reopen")
        more = ("delivered_after_close", "unconfirmed_missing", "unconfirmed_delivered")
        return {name: getattr(self, name) for name in (*names, *more)}


class Model:
    """The broker, the proxy, two durable subscribers and two publishers, and the record of what happened."""

    def __init__(self, tmp_path: Path, rng: random.Random) -> None:
        self.rng = rng
        self.port = _free_port()
        self.config = ServerConfig(
            port=self.port, data_dir=tmp_path, admin_token=TOKEN, store=f"sqlite:{tmp_path / 's.db'}"
        )
        self.server: FastportServer | None = None
        self.proxy = TcpProxy("127.0.0.1", self.port)
        self.subscribers = [Durable("sub-a"), Durable("sub-b")]
        self.publishers: list[Client] = []
        self.sent: dict[str, Sent] = {}
        self.emits: dict[asyncio.Task[PublishResult], Sent] = {}
        self.step = 0
        self.log: list[str] = []
        self.report = Report()

    # ---------------------------------------------------------------- set-up

    async def start(self) -> None:
        self.server = await FastportServer.start(self.config)
        status, _, body = await http(
            self.port,
            "POST",
            "/api/createSession",
            # The broker redelivers every 200 ms (its floor) and never gives up within the test.
            {"sessionName": "model", "password": "pw", "retryInterval": 200, "maxRetryLimit": 1000},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert status == 200, body
        await self.proxy.start()
        for durable in self.subscribers:
            await self.open(durable)
        for _ in range(2):
            publisher = self.client(retry_interval_s=PUBLISH_RETRY_S, max_retries=PUBLISH_RETRIES)
            await publisher.init()
            self.publishers.append(publisher)

    def client(self, **options: Any) -> Client:
        return Client(
            self.proxy.url, "model", "pw", KEY, reconnect=FAST, request_timeout_s=REQUEST_TIMEOUT_S, **options
        )

    def callback(self, durable: Durable, instance: int) -> Callable[[str | bytes, int | float], None]:
        def on_message(payload: str | bytes, timestamp: int | float) -> None:
            durable.received.append((instance, payload))
            if durable.closing == instance:
                durable.after_close.append(payload)

        return on_message

    async def open(self, durable: Durable) -> Client:
        """Open a new instance of a durable subscriber exactly as docs/client.md does: ``get`` right after ``init``."""
        started = time.monotonic()
        for _attempt in range(5):
            durable.instance += 1
            client = self.client(client_id=durable.client_id, durable=True)
            try:
                await client.init()
            except (OSError, WSError, TimeoutError, ConnectionClosed) as exc:
                self.note(f"open {durable.client_id}#{durable.instance}: init failed ({type(exc).__name__})")
                continue
            await client.get(FILTER, self.callback(durable, durable.instance))
            durable.client = client
            break
        else:
            raise AssertionError(f"{durable.client_id} could not connect in 5 attempts")
        elapsed = time.monotonic() - started
        if elapsed > RECONNECT_BOUND_S:
            self.stall(f"open {durable.client_id}#{durable.instance} took {elapsed:.1f} s")
        return client

    # ------------------------------------------------------------ bookkeeping

    def note(self, line: str) -> None:
        self.log.append(f"step {self.step}: {line}")

    def stall(self, what: str) -> None:
        self.report.stalled += 1
        self.report.details.append(f"stalled at step {self.step}: {what}")
        self.note(f"STALL {what}")

    def clients(self) -> list[Client]:
        return [d.client for d in self.subscribers if d.client is not None] + self.publishers

    async def all_connected(self, what: str) -> None:
        """Wait until every client is connected; a wait past ``RECONNECT_BOUND_S`` is a stall."""
        started = time.monotonic()
        deadline = started + REQUEST_TIMEOUT_S + RECONNECT_BOUND_S
        while any(c.state is not ConnectionState.CONNECTED for c in self.clients()):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        if elapsed > RECONNECT_BOUND_S:
            states = ", ".join(c.state.value for c in self.clients())
            self.stall(f"{what}: reconnecting took {elapsed:.1f} s ({states})")

    # ----------------------------------------------------------------- steps

    def publish(self, count: int) -> list[asyncio.Task[PublishResult]]:
        """Start ``count`` QoS 1 ``emit(wait_ack=True)`` calls from one publisher; a few go to a topic nobody takes."""
        index = self.rng.randrange(len(self.publishers))
        publisher = self.publishers[index]
        tasks = []
        for _ in range(count):
            message_id = f"{SEED}-{len(self.sent):05d}"
            noise = self.rng.random() < 0.1
            topic = f"{'noise' if noise else 'm'}/p{index}/{message_id}"
            sent = self.sent[message_id] = Sent(message_id, topic, self.step, noise)
            task = asyncio.create_task(publisher.emit(topic, message_id, wait_ack=True))
            task.add_done_callback(self.emitted)
            self.emits[task] = sent
            tasks.append(task)
        self.note(f"publish {count} from p{index}")
        return tasks

    def emitted(self, task: asyncio.Task[PublishResult]) -> None:
        sent = self.emits.pop(task)
        if task.cancelled():
            sent.outcome = "hung" if sent.outcome == "hung" else "cancelled"
        elif (exc := task.exception()) is not None:
            sent.outcome = type(exc).__name__
        else:
            sent.outcome, sent.result = "confirmed", task.result()

    async def step_publish(self) -> None:
        self.publish(self.rng.randint(1, 8))
        await asyncio.sleep(self.rng.uniform(0, 0.1))

    async def step_cut(self) -> None:
        cut = self.proxy.cut()
        self.note(f"cut {cut} connection(s)")
        if self.rng.random() < 0.5:
            self.publish(self.rng.randint(1, 4))  # emits made while disconnected wait for the reconnect
        await asyncio.sleep(self.rng.uniform(0, 0.3))

    async def step_stall(self) -> None:
        self.proxy.stall()
        self.note("stall")
        if self.rng.random() < 0.7:
            self.publish(self.rng.randint(1, 6))
        await asyncio.sleep(self.rng.uniform(0.05, 0.6))  # longer than the broker's 200 ms retry, sometimes
        self.proxy.resume()
        self.note("resume")

    async def step_reopen(self) -> None:
        """Close a durable subscriber, publish while it is away, and come back with the same client_id."""
        durable = self.rng.choice(self.subscribers)
        assert durable.client is not None
        # Close while connected, so the acks the old instance sent have reached the broker.
        await self.all_connected(f"before closing {durable.client_id}")
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            durable.closing = durable.instance
            await durable.client.close()
        durable.client = None
        self.note(f"close {durable.client_id}#{durable.instance}")
        tasks = self.publish(self.rng.randint(2, 6))
        # The other subscriber acks them: they are confirmed, and held by the broker for this one.
        await asyncio.wait(tasks, timeout=RECONNECT_BOUND_S)
        await asyncio.sleep(self.rng.uniform(0, 0.2))
        client = await self.open(durable)
        self.note(f"reopen {durable.client_id}#{durable.instance} (resumed={client.resumed})")

    async def step_handshake_cut(self) -> None:
        """Cut everything, and cut the next reconnects while their WebSocket handshake is under way."""
        n_bytes = self.rng.randrange(0, 40)  # the 101 response is longer: the handshake never completes
        connections = self.rng.randint(1, 3)
        self.proxy.cut_during_handshake(n_bytes, connections)
        self.proxy.cut()
        self.note(f"cut, then cut {connections} handshake(s) after {n_bytes} byte(s)")
        await asyncio.sleep(0.05)
        await self.all_connected("after handshake cuts")
        self.proxy.disarm()

    async def step_restart(self) -> None:
        """Restart the broker on the same SQLite file and port; the proxy points at the new one."""
        assert self.server is not None
        if self.rng.random() < 0.5:
            self.publish(self.rng.randint(1, 4))
        await self.server.close()
        self.server = None
        self.note("broker down")
        await asyncio.sleep(self.rng.uniform(0, 0.3))
        self.server = await FastportServer.start(self.config)
        self.proxy.target = ("127.0.0.1", self.server.port)
        self.note("broker up")
        await asyncio.sleep(0.05)
        await self.all_connected("after the restart")

    STEP_WEIGHTS: ClassVar[dict[str, int]] = {
        "publish": 5,
        "cut": 2,
        "stall": 2,
        "reopen": 2,
        "handshake_cut": 1,
        "restart": 1,
    }

    def schedule(self, steps: int) -> list[str]:
        """``steps`` step kinds drawn by weight; each kind at least once, at a random place."""
        kinds = list(self.STEP_WEIGHTS)
        plan = self.rng.choices(kinds, weights=list(self.STEP_WEIGHTS.values()), k=max(steps - len(kinds), 0))
        for kind in kinds:
            plan.insert(self.rng.randrange(len(plan) + 1), kind)
        return plan

    async def run(self, steps: int) -> None:
        for step, kind in enumerate(self.schedule(steps), start=1):
            self.step = step
            await getattr(self, f"step_{kind}")()

    # ---------------------------------------------------------------- the end

    async def settle(self) -> None:
        """Everything reconnected, every emit ended (bounded), every confirmed message arrived (bounded)."""
        self.step += 1
        self.proxy.disarm()
        self.proxy.resume()
        await self.all_connected("settling")
        pending = list(self.emits)
        if pending:
            _, still = await asyncio.wait(pending, timeout=EMIT_SETTLE_S)
            for task in still:
                self.emits[task].outcome = "hung"  # wait_ack neither confirmed nor gave up: not confirmed
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
                self.note(f"{len(still)} emit(s) still waiting after {EMIT_SETTLE_S} s, cancelled")
        deadline = time.monotonic() + DELIVERY_SETTLE_S
        while time.monotonic() < deadline and not self.all_delivered():  # noqa: ASYNC110  # callbacks append
            await asyncio.sleep(0.02)
        await asyncio.sleep(QUIET_S)  # late redeliveries would show as duplicates

    def all_delivered(self) -> bool:
        wanted = {s.message_id for s in self.sent.values() if s.outcome == "confirmed" and not s.noise}
        return all(wanted <= {p for _, p in d.received if isinstance(p, str)} for d in self.subscribers)

    def classify(self) -> Report:
        report = self.report
        for durable in self.subscribers:
            report.delivered_after_close += len(durable.after_close)
            per_instance = Counter(durable.received)
            by_payload: dict[str | bytes, list[int]] = {}
            for instance, payload in durable.received:
                by_payload.setdefault(payload, []).append(instance)
            for payload in by_payload:
                sent = self.sent.get(payload) if isinstance(payload, str) else None
                if sent is None or sent.noise:
                    report.unexpected += 1
                    report.details.append(f"unexpected at {durable.client_id}: {payload!r}")
            for (instance, payload), count in per_instance.items():
                if count > 1:
                    report.duplicated += 1
                    report.details.append(f"duplicated at {durable.client_id}#{instance}: {payload!r} x{count}")
            for sent in self.sent.values():
                if sent.noise:
                    continue
                instances = by_payload.get(sent.message_id, [])
                if not instances:
                    if sent.outcome == "confirmed":
                        report.lost += 1
                        report.details.append(
                            f"lost at {durable.client_id}: {sent.message_id} (emitted at step {sent.step}, "
                            f"{sent.result})"
                        )
                    else:
                        report.unconfirmed_missing += 1
                    continue
                if sent.outcome == "confirmed":
                    report.ok += 1
                else:
                    report.unconfirmed_delivered += 1
                if len(set(instances)) > 1:
                    report.redelivered_across_reopen += 1
        return report

    async def close(self) -> None:
        for task in list(self.emits):
            task.cancel()
        if self.emits:
            await asyncio.wait(list(self.emits), timeout=1.0)
        for client in self.clients():
            await asyncio.wait_for(client.close(), REQUEST_TIMEOUT_S)
        await self.proxy.close()
        if self.server is not None:
            await self.server.close()


async def test_at_least_once_at_the_callback_through_cuts_stalls_reopens_and_restarts(tmp_path: Path) -> None:
    model = Model(tmp_path, random.Random(SEED))
    started = time.monotonic()
    try:
        await model.start()
        await model.run(STEPS)
        await model.settle()
    finally:
        await model.close()
    report = model.classify()
    outcomes = Counter(s.outcome for s in model.sent.values())
    summary = (
        f"seed {SEED}, {STEPS} steps, {len(model.sent)} messages in {time.monotonic() - started:.1f} s; "
        f"emit outcomes {dict(outcomes)}; per (subscriber, message): {report.counts()}; "
        f"proxy: {model.proxy.accepted} accepted, {model.proxy.handshake_cuts} handshake cuts, "
        f"{model.proxy.refused} refused"
    )
    print(summary)
    if report.failed:
        print("\n".join(model.log))
        print("\n".join(report.details[:40]))
    assert not report.failed, summary + "\n" + "\n".join(report.details[:20])
    assert outcomes["confirmed"] > len(model.sent) // 2, summary  # the model exercised confirmed delivery
    # Nothing of the proxy, the clients or the broker outlives the test.
    assert model.proxy.running_tasks == 0
    leftover = [task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()]
    assert not leftover, leftover


# ----------------------------------------------------------------------------------------- focused tests


@pytest.mark.both_loops
async def test_documented_durable_resume_loses_nothing(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session(retryInterval=200)
    url, name, password = f"ws://127.0.0.1:{server.port}", session["sessionName"], session["password"]
    got: list[str | bytes] = []

    def cb(payload: str | bytes, timestamp: int | float) -> None:
        got.append(payload)

    async with Client(url, name, password, KEY, client_id="w", durable=True, reconnect=FAST) as c:
        await c.get("q/#", cb)
    async with Client(url, name, password, KEY, reconnect=FAST) as publisher:
        for index in range(3):
            result = await publisher.emit(f"q/{index}", f"away-{index}")
            assert result.delivered_to == 1  # held for the durable subscriber while it is away
    async with Client(url, name, password, KEY, client_id="w", durable=True, reconnect=FAST) as c:
        await c.get("q/#", cb)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while len(got) < 3:  # noqa: ASYNC110  # the callback appends; nothing to await on
                    await asyncio.sleep(0.01)
        assert c.resumed is True
    assert sorted(map(str, got)) == ["away-0", "away-1", "away-2"], (got, c.stats)


@pytest.mark.both_loops
async def test_wait_ack_against_a_subscriber_that_never_acks_raises_ack_timeout(
    server: FastportServer, make_session: SessionFactory
) -> None:
    session = await make_session()
    url, name, password = f"ws://127.0.0.1:{server.port}", session["sessionName"], session["password"]
    # A subscriber with another key cannot open the envelopes, so it never acks; the broker holds the message
    # and answers each re-send with "duplicate": true.
    async with (
        Client(url, name, password, OTHER_KEY, reconnect=FAST) as stranger,
        Client(url, name, password, KEY, reconnect=FAST, retry_interval_s=0.5, max_retries=3) as publisher,
    ):
        await stranger.get("k/#", lambda payload, timestamp: None)
        started = time.monotonic()
        with pytest.raises(AckTimeout):
            async with asyncio.timeout(5):
                await publisher.emit("k/x", "never acked", wait_ack=True)
        assert time.monotonic() - started < 5
        assert stranger.stats.rejected >= 1 and stranger.stats.acks_sent == 0
