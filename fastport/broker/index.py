"""Per-session subscriber index on the compiled ``TopicTrie``.

The trie is made on the session's first subscription and its nodes are pruned when
the last subscriber of a filter leaves, so an idle session costs nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastport._speedups import TopicTrie

if TYPE_CHECKING:
    from fastport.broker.connection import Connection


class SubscriberIndex:
    """Which connections of one session hold which topic filters."""

    __slots__ = ("_trie",)

    def __init__(self) -> None:
        self._trie: TopicTrie | None = None

    def __len__(self) -> int:
        return 0 if self._trie is None else len(self._trie)

    def add(self, topic_filter: str, connection: Connection, qos: int = 1) -> bool:
        """Subscribe ``connection`` to ``topic_filter``; False if it already was."""
        if self._trie is None:
            self._trie = TopicTrie()
        return self._trie.subscribe(topic_filter, connection, qos)

    def discard(self, topic_filter: str, connection: Connection) -> bool:
        """Unsubscribe ``connection`` from ``topic_filter``; False if it was not subscribed."""
        if self._trie is None:
            return False
        removed = self._trie.unsubscribe(topic_filter, connection)
        if not len(self._trie):
            self._trie = None
        return removed

    def match(self, topic: str) -> dict[Connection, int]:
        """Every connection subscribed to ``topic`` (by exact filter or wildcard) -> its QoS."""
        if self._trie is None:
            return {}
        return self._trie.match(topic)  # type: ignore[return-value]
