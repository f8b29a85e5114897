"""The broker's counters, and the Prometheus metric each one is exposed as.

Counters are plain slotted integers bumped where things happen; ``fastport.metrics`` reads them
when ``GET /metrics`` is scraped, through the tables below. A new metric of the broker is one
attribute here, one row in its table and the line that bumps it; a test checks that every
counter has a row and every row a counter, so a rename cannot leave a metric stuck at 0.
"""

from __future__ import annotations

from typing import Final

from fastport.broker.histogram import LatencyHistogram


class BrokerCounters:
    """Connections refused, limited or cut off, and failed ``init``s.

    ``auth_failures`` is ``fastport_auth_failures_total{kind="websocket_init"}``; the others are
    ``fastport_limit_hits_total`` with the ``limit`` label of ``BROKER_LIMIT_LABELS``.
    """

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
    """What happened to published messages: deliveries, acks, retries, drops, and two latency histograms.

    Each attribute is described by its row in ``DELIVERY_COUNTERS`` or ``LATENCY_HISTOGRAMS``.
    """

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
        "ignored_acks",
        "published",
        "queue_overflows",
        "redeliveries",
        "retained_evictions",
        "wills_published",
    )

    def __init__(self) -> None:
        self.published = 0
        self.deliveries = 0
        self.acks = 0
        self.ignored_acks = 0
        self.redeliveries = 0
        self.expired = 0
        self.exhausted = 0
        self.duplicates = 0
        self.dropped_qos0 = 0
        self.queue_overflows = 0
        self.retained_evictions = 0
        self.wills_published = 0
        self.durable_expired = 0
        self.delivery_latency = LatencyHistogram()
        self.ack_latency = LatencyHistogram()


#: ``DeliveryCounters`` attributes: (attribute, metric name without ``_total``, help).
DELIVERY_COUNTERS: Final = (
    ("published", "fastport_messages_published", "Publishes accepted and fanned out (duplicates excluded)."),
    ("deliveries", "fastport_deliveries", "Message frames sent to subscribers on first delivery."),
    ("acks", "fastport_acks", "Acks that counted (from a connection the message was delivered to)."),
    (
        "ignored_acks",
        "fastport_acks_ignored",
        "Acks of a messageId not held for that subscriber (repeated, foreign or unknown), accepted silently.",
    ),
    ("redeliveries", "fastport_redeliveries", "Message frames resent with a retry count."),
    ("expired", "fastport_messages_expired", "Held messages released at their messageExpiryTime."),
    ("exhausted", "fastport_messages_exhausted", "Held messages released after maxRetryLimit redeliveries."),
    ("dropped_qos0", "fastport_qos0_dropped", "QoS 0 messages dropped for an offline or backed-up subscriber."),
    (
        "duplicates",
        "fastport_duplicate_publishes",
        "Publishes of a messageId inside the dedupe window (client retries).",
    ),
    ("queue_overflows", "fastport_queue_overflows", "Messages refused or evicted because a queue was full."),
    (
        "retained_evictions",
        "fastport_retained_evictions",
        "Retained topics evicted because the session's store was full.",
    ),
    ("wills_published", "fastport_wills_published", "Last wills published for connections that ended uncleanly."),
    ("durable_expired", "fastport_durable_clients_expired", "Offline durable clients forgotten at their TTL."),
)

#: ``DeliveryCounters`` latency histograms (milliseconds inside, seconds on the wire).
LATENCY_HISTOGRAMS: Final = (
    (
        "delivery_latency",
        "fastport_publish_to_delivery_seconds",
        "Time from a publish to its first delivery to each subscriber (0 for those sent at once; queued ones wait).",
    ),
    ("ack_latency", "fastport_publish_to_ack_seconds", "Time from a publish to each subscriber's ack."),
)

#: ``BrokerCounters`` limit attributes and their ``limit`` label value.
BROKER_LIMIT_LABELS: Final = (
    ("rate_limited", "publish_rate"),
    ("rate_abuse_closes", "publish_rate_close"),
    ("subscription_limit_hits", "subscriptions"),
    ("connection_limit_hits", "connections_per_session"),
    ("auth_cut_offs", "auth_throttle"),
    ("slow_consumer_closes", "slow_consumer"),
    ("init_timeouts", "init_timeout"),
)
