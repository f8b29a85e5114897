"""The broker's counters: plain slotted integers bumped where things happen, read at scrape time.

``fastport.metrics`` reads these attributes by name when ``GET /metrics`` is scraped; a renamed
counter is a mypy error there, not a metric silently stuck at 0. Nothing here does any work on
the hot path beyond an integer add.
"""

from __future__ import annotations

from fastport.broker.histogram import LatencyHistogram


class BrokerCounters:
    """Connections refused, limited or cut off, and failed ``init``s."""

    __slots__ = (
        "auth_cut_offs",
        "auth_failures",
        "connection_limit_hits",
        "init_timeouts",
        "rate_abuse_closes",
        "rate_limited",
        "slow_consumer_closes",
        "subscription_limit_hits",
    )

    def __init__(self) -> None:
        #: ``init``s refused for a wrong password or an unknown session.
        self.auth_failures = 0
        #: ``init``s refused outright by the authentication throttle (close 4006).
        self.auth_cut_offs = 0
        #: Publishes refused by the per-connection rate limit.
        self.rate_limited = 0
        #: Connections closed for repeated rate-limit violations (4005).
        self.rate_abuse_closes = 0
        #: Subscribes refused for a full subscription list.
        self.subscription_limit_hits = 0
        #: ``init``s refused for a session at its connection limit.
        self.connection_limit_hits = 0
        #: Connections cut off as slow consumers (4007).
        self.slow_consumer_closes = 0
        #: Connections closed for no ``init`` within the init timeout (4003).
        self.init_timeouts = 0


class DeliveryCounters:
    """What happened to published messages: deliveries, acks, retries, drops, and two latency histograms."""

    __slots__ = (
        "ack_latency",
        "acks",
        "deliveries",
        "delivery_latency",
        "dropped_qos0",
        "duplicates",
        "durable_expired",
        "exhausted",
        "expired",
        "published",
        "queue_overflows",
        "redeliveries",
        "retained_evictions",
        "wills_published",
    )

    def __init__(self) -> None:
        #: Publishes accepted and fanned out (duplicates excluded).
        self.published = 0
        #: ``message`` frames sent on first delivery.
        self.deliveries = 0
        #: Acks that counted.
        self.acks = 0
        #: ``message`` frames resent with a retry count.
        self.redeliveries = 0
        #: Held messages released at their ``messageExpiryTime``.
        self.expired = 0
        #: Held messages released after ``maxRetryLimit`` redeliveries.
        self.exhausted = 0
        #: Publishes of a messageId inside the dedupe window.
        self.duplicates = 0
        #: QoS 0 messages dropped for an offline or backed-up subscriber.
        self.dropped_qos0 = 0
        #: Messages refused or evicted because a subscriber's queue was full.
        self.queue_overflows = 0
        #: Retained topics evicted because the session's retained store was full.
        self.retained_evictions = 0
        #: Last wills published.
        self.wills_published = 0
        #: Offline durable clients forgotten at their TTL.
        self.durable_expired = 0
        #: Publish to first delivery (queued deliveries wait for a slot or a resume).
        self.delivery_latency = LatencyHistogram()
        #: Publish to each subscriber's ack.
        self.ack_latency = LatencyHistogram()
