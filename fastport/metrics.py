"""Prometheus metrics, read from the broker's own counters at scrape time.

Nothing here runs on the hot path: the broker and its delivery already count what they do in
plain integer attributes (``fastport.broker.stats``, which also names the metric of each), and
``BrokerCollector.collect`` reads them when ``GET /metrics`` is scraped. The server layer (front,
REST API, WebSocket listener) counts the events only it sees (authentication failures, limit hits, HTTP statuses)
in a ``ServerCounters``, on error paths only. Labels are bounded: no session,
connection or topic is ever a label value. ``docs/metrics.md`` lists every metric.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from fastport import __version__, _speedups
from fastport.broker.histogram import LatencyHistogram
from fastport.broker.stats import BROKER_LIMIT_LABELS, DELIVERY_COUNTERS, LATENCY_HISTOGRAMS
from fastport.engines.redis import RedisEngine

if TYPE_CHECKING:
    from fastport.broker.core import Broker

#: ``Content-Type`` of ``GET /metrics``.
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

#: ``RedisEngine`` attributes and their metric.
ENGINE_METRICS: Final = (
    ("outages", "fastport_engine_outages", "Times the Redis engine became unreachable."),
    ("forwarded", "fastport_engine_forwarded", "Publishes, acks and events sent to other nodes."),
    ("received", "fastport_engine_received", "Publishes received from other nodes."),
    ("dropped", "fastport_engine_dropped", "Messages for other nodes dropped because the forwarding queue was full."),
)

#: ``ServerCounters`` limit attributes and their ``limit`` label value.
LIMIT_LABELS: Final = (
    ("http_head_too_large", "http_head_size"),
    ("http_body_too_large", "http_body_size"),
    ("http_head_timeouts", "handshake_timeout"),
    ("ws_message_too_big", "ws_message_size"),
    ("ws_origin_rejected", "origin"),
    ("rest_auth_delayed", "rest_auth_delay"),
    ("rest_auth_throttled", "rest_auth_throttle"),
)

#: ``ServerCounters`` authentication attributes and their ``kind`` label value.
AUTH_LABELS: Final = (
    ("admin_auth_failures", "admin"),
    ("owner_auth_failures", "session_owner"),
    ("metrics_auth_failures", "metrics"),
)


class ServerCounters:
    """Events counted by the server layer (never on the per-frame path)."""

    __slots__ = (
        "connections_accepted",
        "ws_upgrades",
        "admin_auth_failures",
        "owner_auth_failures",
        "metrics_auth_failures",
        "http_head_too_large",
        "http_body_too_large",
        "http_head_timeouts",
        "http_malformed",
        "ws_message_too_big",
        "ws_origin_rejected",
        "ws_protocol_errors",
        "rest_auth_delayed",
        "rest_auth_throttled",
        "http_responses",
    )

    def __init__(self) -> None:
        self.connections_accepted = 0
        self.ws_upgrades = 0
        self.admin_auth_failures = 0
        self.owner_auth_failures = 0
        self.metrics_auth_failures = 0
        self.http_head_too_large = 0
        self.http_body_too_large = 0
        self.http_head_timeouts = 0
        self.http_malformed = 0
        self.ws_message_too_big = 0
        self.ws_origin_rejected = 0
        self.ws_protocol_errors = 0
        self.rest_auth_delayed = 0
        self.rest_auth_throttled = 0
        self.http_responses: Counter[int] = Counter()


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class BrokerCollector(Collector):
    """Reads a broker's and a server's counters each time the registry is collected.

    Args:
        broker: the running broker.
        counters: the server layer's counters.
    """

    def __init__(self, broker: Broker, counters: ServerCounters) -> None:
        self._broker = broker
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        broker, counters = self._broker, self._counters
        info = GaugeMetricFamily(
            "fastport_info", "fastport version and hot-path implementation.", labels=("version", "implementation")
        )
        info.add_metric((__version__, _speedups.IMPLEMENTATION), 1)
        yield info
        stats = broker.stats()
        yield GaugeMetricFamily(
            "fastport_uptime_seconds", "Seconds since the broker started.", value=_number(stats.get("uptimeSeconds"))
        )
        yield GaugeMetricFamily("fastport_connections", "Open WebSocket connections.", value=broker.connection_count)
        yield GaugeMetricFamily("fastport_sessions", "Live sessions.", value=_number(stats.get("sessions")))
        yield GaugeMetricFamily(
            "fastport_inflight_messages",
            "Messages sent and not yet acked by every subscriber they went to.",
            value=_number(stats.get("inflightMessages")),
        )
        delivery = broker.delivery.counters
        for attribute, name, documentation in DELIVERY_COUNTERS:
            yield CounterMetricFamily(name, documentation, value=getattr(delivery, attribute))
        for attribute, name, documentation in LATENCY_HISTOGRAMS:
            histogram: LatencyHistogram = getattr(delivery, attribute)
            yield HistogramMetricFamily(
                name, documentation, buckets=histogram.cumulative(), sum_value=histogram.sum_ms / 1000
            )
        yield CounterMetricFamily(
            "fastport_connections_accepted",
            "TCP connections accepted (HTTP and WebSocket).",
            value=counters.connections_accepted,
        )
        yield CounterMetricFamily(
            "fastport_websocket_upgrades", "Connections upgraded to WebSocket.", value=counters.ws_upgrades
        )
        auth = CounterMetricFamily("fastport_auth_failures", "Refused REST credentials, by kind.", labels=("kind",))
        for attribute, label in AUTH_LABELS:
            auth.add_metric((label,), getattr(counters, attribute))
        auth.add_metric(("websocket_init",), broker.counters.auth_failures)
        yield auth
        limits = CounterMetricFamily(
            "fastport_limit_hits", "Requests and connections refused or closed by a server limit.", labels=("limit",)
        )
        for attribute, label in LIMIT_LABELS:
            limits.add_metric((label,), getattr(counters, attribute))
        for attribute, label in BROKER_LIMIT_LABELS:
            limits.add_metric((label,), getattr(broker.counters, attribute))
        yield limits
        engine = broker.cluster
        if isinstance(engine, RedisEngine):
            yield GaugeMetricFamily(
                "fastport_engine_connected", "1 while the Redis engine is reachable.", value=int(engine.connected)
            )
            for attribute, name, documentation in ENGINE_METRICS:
                yield CounterMetricFamily(name, documentation, value=getattr(engine, attribute))
        yield CounterMetricFamily(
            "fastport_websocket_protocol_errors",
            "WebSocket connections closed with 1002 by fastport (reserved bits, bad fragments, bad close codes).",
            value=counters.ws_protocol_errors,
        )
        yield CounterMetricFamily(
            "fastport_http_malformed_requests", "HTTP requests that could not be parsed.", value=counters.http_malformed
        )
        responses = CounterMetricFamily(
            "fastport_http_responses", "HTTP responses sent, by status code.", labels=("status",)
        )
        for status, count in sorted(counters.http_responses.items()):
            responses.add_metric((str(status),), count)
        yield responses


class Metrics:
    """The registry behind ``GET /metrics``: fastport's collector and the process collector."""

    def __init__(self, broker: Broker, counters: ServerCounters) -> None:
        self.counters = counters
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BrokerCollector(broker, counters))
        ProcessCollector(namespace="fastport", registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "BrokerCollector", "Metrics", "ServerCounters"]
