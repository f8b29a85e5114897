"""Broker limits over real sockets: each answered with its own code, each counted, other tenants untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, ClientFactory, SessionFactory

from fastport.broker.limits import AuthThrottle, TokenBucket
from fastport.config import BrokerLimits, ServerConfig
from fastport.errors import CloseCode, ErrorCode
from fastport.server.app import FastportServer

TIGHT = BrokerLimits(
    max_subscriptions_per_connection=3,
    max_connections_per_session=2,
    publish_rate_per_s=10.0,
    publish_burst=5,
    publish_violations_before_close=4,
    auth_failures_before_delay=2,
    auth_failures_before_cutoff=4,
    auth_failure_window_s=30.0,
    max_topic_length=20,
    max_topic_depth=3,
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[FastportServer]:
    config = ServerConfig(port=0, data_dir=tmp_path, admin_user=ADMIN_USER, admin_pass=ADMIN_PASS, limits=TIGHT)
    srv = await FastportServer.start(config)
    try:
        yield srv
    finally:
        await srv.close()


async def test_subscriptions_per_connection(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    client = await connect(await make_session())
    for topic in ("a", "b", "c"):
        assert (await client.subscribe(topic))["success"] is True
    refused = await client.subscribe("d")
    assert refused["success"] is False and refused["code"] == ErrorCode.TOO_MANY_SUBSCRIPTIONS
    assert (await client.subscribe("a"))["success"] is True  # re-subscribing a held filter is fine
    assert server.broker.counters.subscription_limit_hits == 1


async def test_connections_per_session(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session, other = await make_session(), await make_session()
    await connect(session)
    await connect(session)
    third = await connect()
    refused = await third.init(session["sessionName"], "pw")
    assert refused["success"] is False and refused["code"] == ErrorCode.TOO_MANY_CONNECTIONS
    assert (await third.init(other["sessionName"], "pw"))["success"] is True  # still usable
    assert server.broker.counters.connection_limit_hits == 1


async def test_publish_rate_limit_then_close_on_abuse(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    noisy, calm = await make_session(), await make_session()
    flooder, calm_pub, calm_sub = await connect(noisy), await connect(calm), await connect(calm)
    await calm_sub.subscribe("calm")
    for _ in range(5):
        flooder.publish("flood")
    answers = [await flooder.recv() for _ in range(5)]
    assert all(answer["success"] is True for answer in answers)
    for _ in range(3):
        flooder.publish("flood")
        refused = await flooder.recv()
        assert refused["type"] == "publish_response" and refused["code"] == ErrorCode.RATE_LIMITED
    flooder.publish("flood")
    assert await flooder.wait_closed() == CloseCode.RATE_LIMIT_ABUSE
    calm_pub.publish("calm")
    assert (await calm_pub.recv())["deliveredTo"] == 1
    assert server.broker.counters.rate_limited == 4 and server.broker.counters.rate_abuse_closes == 1


async def test_topic_length_and_depth_limits(make_session: SessionFactory, connect: ClientFactory) -> None:
    client = await connect(await make_session())
    for topic in ("x" * 21, "a/b/c/d"):
        refused = await client.subscribe(topic)
        assert refused["code"] == ErrorCode.INVALID_TOPIC, topic
        client.publish(topic)
        assert (await client.recv())["code"] == ErrorCode.INVALID_TOPIC


async def test_brute_force_gets_slower_then_cut_off(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(password="right")
    attacker = await connect()
    loop = asyncio.get_running_loop()
    timings = []
    for _ in range(4):
        started = loop.time()
        assert (await attacker.init(session["sessionName"], "wrong"))["code"] == ErrorCode.INVALID_PASSWORD
        timings.append(loop.time() - started)
    assert timings[2] >= 0.09 and timings[3] >= 0.19  # delays of 100 ms, then 200 ms
    cut = await attacker.init(session["sessionName"], "right")
    assert cut["code"] == ErrorCode.AUTH_THROTTLED
    assert await attacker.wait_closed() == CloseCode.AUTH_CUT_OFF
    assert server.broker.counters.auth_failures == 4 and server.broker.counters.auth_cut_offs == 1


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, now_s=0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.take(10.0) and bucket.take(10.0) and not bucket.take(10.0)  # capped at the burst
    assert bucket.violations == 3


def test_auth_throttle_window_and_success() -> None:
    throttle = AuthThrottle(free=1, cutoff=3, window_s=10.0, address_cutoff=100)
    assert throttle.delay_s("1.2.3.4", "s", 0.0) == 0.0
    throttle.failed("1.2.3.4", "s", 0.0)
    assert throttle.delay_s("1.2.3.4", "s", 1.0) == pytest.approx(0.1)
    throttle.failed("1.2.3.4", "s", 1.0)
    throttle.failed("1.2.3.4", "s", 2.0)
    assert throttle.delay_s("1.2.3.4", "s", 3.0) is None
    assert throttle.delay_s("1.2.3.4", "s", 10.5) == pytest.approx(0.2)  # the first failure left the window
    throttle.succeeded("1.2.3.4", "s")
    assert throttle.delay_s("1.2.3.4", "other", 10.5) == 0.0
    assert throttle.delay_s("5.6.7.8", "s", 10.5) == pytest.approx(0.2)  # a login never resets a session
    assert throttle.delay_s("1.2.3.4", "s", 10.5) == pytest.approx(0.2)  # ... the session's count is its own


def test_auth_throttle_keys_pairs_sessions_and_addresses_apart() -> None:
    throttle = AuthThrottle(free=2, cutoff=4, window_s=10.0, address_cutoff=10)
    for _ in range(4):
        throttle.failed("1.2.3.4", "a", 0.0)
    assert throttle.delay_s("1.2.3.4", "a", 0.0) is None  # the pair (and the session name) are cut off
    assert throttle.delay_s("5.6.7.8", "a", 0.0) is None  # one session sprayed from many addresses
    assert throttle.delay_s("1.2.3.4", "b", 0.0) == 0.0  # another session behind the same address
    for name in ("b", "c", "d"):
        for _ in range(2):
            throttle.failed("1.2.3.4", name, 1.0)
    assert throttle.delay_s("1.2.3.4", "e", 1.0) is None  # 4 + 6 failures: the address's ceiling
    throttle.succeeded("1.2.3.4", "e")
    assert throttle.delay_s("1.2.3.4", "e", 1.0) is None  # a login never resets the address
    assert throttle.delay_s("5.6.7.8", "e", 1.0) == 0.0
    assert throttle.delay_s("1.2.3.4", "e", 10.5) == 0.0  # all of them left the window


@pytest.fixture
async def slow_server(tmp_path: Path) -> AsyncIterator[FastportServer]:
    limits = BrokerLimits(outbound_buffer_limit=256 << 10, slow_consumer_grace_s=3.0)
    srv = await FastportServer.start(ServerConfig(port=0, data_dir=tmp_path, limits=limits))
    try:
        yield srv
    finally:
        await srv.close()


async def test_slow_consumer_is_bounded_then_closed_while_others_keep_up(slow_server: FastportServer) -> None:
    from fastport_client_helpers import WSClient, http

    server = slow_server
    status, _, _ = await http(
        server.port,
        "POST",
        "/api/createSession",
        {"sessionName": "busy", "password": "pw", "maxQueuedBytes": 1 << 20, "retryInterval": 60000},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert status == 200
    clients = [await WSClient.connect(server.port) for _ in range(3)]
    publisher, fast, stalled = clients
    try:
        for client in clients:
            assert (await client.init("busy", "pw"))["success"] is True
        await fast.subscribe("feed")
        await stalled.subscribe("feed")
        stalled.transport.underlying_transport.pause_reading()
        payload = "p" * (128 << 10)
        for index in range(80):  # 10 MiB in all: more than the kernel buffers of a loopback socket
            publisher.publish("feed", data=payload, qos=index % 2)
            assert (await publisher.recv_type("publish_response"))["success"] is True
            frame = await fast.recv_type("message")
            if frame.get("qos") != 0:
                fast.send({"type": "ack", "topic": "feed", "messageId": frame["messageId"]})
        (slow_listener,) = [item for item in server._listeners if item.paused]
        subscriber = slow_listener.target.subscriber
        assert subscriber.queued_bytes <= 1 << 20  # its queue is bounded ...
        assert slow_listener.backlog <= (256 << 10) + 2 * (129 << 10)  # ... and so is its socket buffer
        assert server.broker.delivery.counters.dropped_qos0 > 0 and server.broker.delivery.counters.queue_overflows > 0
        # Past its grace it is cut off (reset: it would never read a close frame) and its state goes.
        for _ in range(60):
            if server.broker.counters.slow_consumer_closes:
                break
            await asyncio.sleep(0.1)
        assert server.broker.counters.slow_consumer_closes == 1
        await asyncio.sleep(0.1)
        assert subscriber.released and subscriber.queued_bytes == 0
        stalled.transport.underlying_transport.resume_reading()
        await stalled.wait_closed(timeout=5)
    finally:
        for client in clients:
            await client.close()
