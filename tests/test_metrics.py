"""GET /metrics: Prometheus text read from the broker's counters, guarded by the admin credential."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastport_client_helpers import ClientFactory, SessionFactory, http
from prometheus_client.parser import text_string_to_metric_families

from fastport.config import ServerConfig
from fastport.metrics import Metrics
from fastport.server.app import FastportServer


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(port: int, headers: dict[str, str] | None) -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write((head + "\r\n").encode())
    data = await reader.read()
    writer.close()
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode().split("\r\n")
    parsed = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), parsed, body.decode()


async def test_metrics_need_the_admin_credential(server: FastportServer) -> None:
    status, _, answer = await http(server.port, "GET", "/metrics")
    assert status == 401 and answer["code"] == 3007
    status, _, answer = await http(server.port, "GET", "/metrics", headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, _, _ = await _scrape(server.port, {"Authorization": f"Bearer {server.admin_token}"})
    assert status == 200
    assert server.counters.metrics_auth_failures == 2


async def test_metrics_count_a_session_lifecycle(
    server: FastportServer, make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    message_id = publisher.publish("t")
    await publisher.recv_type("publish_response")
    await subscriber.recv_type("message")
    subscriber.send({"type": "ack", "topic": "t", "messageId": message_id})
    await publisher.recv_type("ack_received")
    await http(server.port, "POST", "/api/createSession", {"sessionName": "x", "password": "y"})
    status, headers, text = await _scrape(server.port, {"Authorization": f"Bearer {server.admin_token}"})
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = _samples(text)
    assert samples[("fastport_connections", ())] == 2
    assert samples[("fastport_sessions", ())] == 1
    assert samples[("fastport_messages_published_total", ())] == 1
    assert samples[("fastport_deliveries_total", ())] == 1
    assert samples[("fastport_acks_total", ())] == 1
    assert samples[("fastport_inflight_messages", ())] == 0
    assert samples[("fastport_publish_to_delivery_seconds_count", ())] == 1
    assert samples[("fastport_publish_to_delivery_seconds_bucket", (("le", "+Inf"),))] == 1
    assert samples[("fastport_publish_to_ack_seconds_count", ())] == 1
    assert samples[("fastport_publish_to_ack_seconds_bucket", (("le", "60"),))] == 1
    assert samples[("fastport_auth_failures_total", (("kind", "admin"),))] == 1
    assert samples[("fastport_websocket_upgrades_total", ())] == 2
    assert samples[("fastport_http_responses_total", (("status", "401"),))] == 1
    assert ("fastport_limit_hits_total", (("limit", "init_timeout"),)) in samples
    # Bounded labels: no session or topic name appears anywhere.
    assert session["sessionName"] not in {v for (_, labels) in samples for _, v in labels}


async def test_metrics_open(tmp_path: Path) -> None:
    srv = await FastportServer.start(ServerConfig(port=0, data_dir=tmp_path, metrics_open=True))
    try:
        status, _, text = await _scrape(srv.port, None)
        assert status == 200 and "fastport_info{" in text
    finally:
        await srv.close()


async def test_metrics_count_throttled_rest_credentials(server: FastportServer) -> None:
    wrong = {"Authorization": "Bearer wrong"}
    body = {"sessionName": "x", "password": "y"}
    await asyncio.gather(*(http(server.port, "POST", "/api/createSession", body, headers=wrong) for _ in range(22)))
    # The scraping address is throttled too: read the counters as a scraper from elsewhere would.
    samples = _samples(Metrics(server.broker, server.counters).render().decode())
    assert samples[("fastport_auth_failures_total", (("kind", "admin"),))] == 20
    assert samples[("fastport_limit_hits_total", (("limit", "rest_auth_delay"),))] == 15
    assert samples[("fastport_limit_hits_total", (("limit", "rest_auth_throttle"),))] == 2
