"""Retained messages: the last retained publish of each topic of a session, bounded per session.

A publish with ``"retain": true`` replaces its topic's retained message; an empty payload clears
it. A session keeps at most ``maxRetained`` topics: the oldest is evicted (counted and logged)
to make room. A new subscription is offered every retained message its filter matches
(``Delivery.send_retained``). Each change is recorded in the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastport.protocol.topics import filter_matches

if TYPE_CHECKING:
    from fastport.broker.journal import Journal
    from fastport.broker.sessions import Session
    from fastport.broker.stats import DeliveryCounters
    from fastport.protocol.frames import Publish

logger = logging.getLogger("fastport.delivery")


class RetainedMessages:
    """Sets, clears, evicts and matches the retained messages kept in each ``Session.retained``."""

    __slots__ = ("_counters", "_journal")

    def __init__(self, journal: Journal, counters: DeliveryCounters) -> None:
        self._journal = journal
        self._counters = counters

    def retain(self, session: Session, publish: Publish, timestamp: int | float) -> None:
        """Make ``publish`` its topic's retained message, or clear the topic if its payload is empty."""
        retained = session.retained
        if retained.pop(publish.topic, None) is not None and not publish.data:
            self._journal.retained_cleared(session, publish.topic)
        if not publish.data:
            return
        limit = session.settings.max_retained
        while retained and len(retained) >= limit:
            evicted = next(iter(retained))
            del retained[evicted]
            self._counters.retained_evictions += 1
            self._journal.retained_cleared(session, evicted)
            logger.warning("session %r: retained store full, evicted topic %r", session.name, evicted)
        if limit:
            retained[publish.topic] = (publish, timestamp)
            self._journal.retained_set(session, publish, timestamp)

    @staticmethod
    def matching(session: Session, topic_filter: str) -> Iterator[tuple[Publish, int | float]]:
        """The retained messages (publish, timestamp) whose topic ``topic_filter`` matches, oldest first."""
        for topic, (publish, timestamp) in list(session.retained.items()):
            if filter_matches(topic_filter, topic):
                yield publish, timestamp
