"""Every broker counter is exposed as a metric, and every metric row reads a counter that exists."""

from __future__ import annotations

from fastport.broker.stats import (
    BROKER_LIMIT_LABELS,
    DELIVERY_COUNTERS,
    LATENCY_HISTOGRAMS,
    BrokerCounters,
    DeliveryCounters,
)


def test_every_delivery_counter_has_exactly_one_metric() -> None:
    rows = [attribute for attribute, _, _ in DELIVERY_COUNTERS + LATENCY_HISTOGRAMS]
    assert sorted(rows) == sorted(DeliveryCounters.__slots__)
    names = [name for _, name, _ in DELIVERY_COUNTERS + LATENCY_HISTOGRAMS]
    assert len(set(names)) == len(names)


def test_every_broker_counter_has_a_metric() -> None:
    rows = [attribute for attribute, _ in BROKER_LIMIT_LABELS] + ["auth_failures"]
    assert sorted(rows) == sorted(BrokerCounters.__slots__)


def test_counters_start_at_zero() -> None:
    delivery, broker = DeliveryCounters(), BrokerCounters()
    assert all(getattr(delivery, attribute) == 0 for attribute, _, _ in DELIVERY_COUNTERS)
    assert all(getattr(broker, attribute) == 0 for attribute in BrokerCounters.__slots__)
