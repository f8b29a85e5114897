"""Per-session subscriber index on the compiled ``TopicTrie``.

The trie is made on the session's first subscription and its nodes are pruned when
the last subscriber of a filter leaves, so an idle session costs nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastport._speedups import TopicTrie

if TYPE_CHECKING:
    from fastport.broker.subscriber import Subscriber


class SubscriberIndex:
    """Which subscribers of one session hold which topic filters."""

    __slots__ = ("_trie",)

    def __init__(self) -> None:
        self._trie: TopicTrie[Subscriber] | None = None

    def __len__(self) -> int:
        return 0 if self._trie is None else len(self._trie)

    def add(self, topic_filter: str, subscriber: Subscriber, qos: int = 1) -> bool:
        """Subscribe ``subscriber`` to ``topic_filter`` at ``qos``; False if it already was (qos updated)."""
        if self._trie is None:
            self._trie = TopicTrie()
        return self._trie.subscribe(topic_filter, subscriber, qos)

    def discard(self, topic_filter: str, subscriber: Subscriber) -> bool:
        """Unsubscribe ``subscriber`` from ``topic_filter``; False if it was not subscribed."""
        if self._trie is None:
            return False
        removed = self._trie.unsubscribe(topic_filter, subscriber)
        if not len(self._trie):
            self._trie = None
        return removed

    def match(self, topic: str) -> dict[Subscriber, int]:
        """Every subscriber of ``topic`` (by exact filter or wildcard) -> its highest matching QoS."""
        if self._trie is None:
            return {}
        return self._trie.match(topic)
