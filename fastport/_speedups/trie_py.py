"""TopicTrie: a per-session subscription index over MQTT-style topic filters (reference twin).

Rules (MQTT 3.1.1 §4.7):

- Topics and filters are split on ``/`` into levels; a level may be empty (``a//b`` has three
  levels, ``/a`` has two, the first empty).
- A filter level that is exactly ``+`` matches any one topic level.
- A filter level that is exactly ``#`` matches the parent level and any number of further levels:
  ``a/#`` matches ``a``, ``a/b`` and ``a/b/c``; ``#`` alone matches every topic. A ``#`` that is
  not the last level of a filter makes that filter match nothing.
- §4.7.2: a topic whose first level starts with ``$`` is not matched by a filter whose first level
  is ``+`` or ``#``.
- Anything else in a level (``a+``, ``$x``) is literal.

The trie does not validate: callers validate filters and topics (``fastport.protocol.topics``).
It accepts any ``str`` without raising. ``trie_c.pyx`` is the compiled twin of this module; both
have the same names, signatures, results and exceptions.

Shape: each node holds its literal children in a dict, its ``+`` and ``#`` children in their own
attributes (looked up directly, never by iterating children), and ``subs``, the subscribers whose
filter ends at that node mapped to their qos. The trie counts the pairs whose filter has a
wildcard; while that count is zero, ``match`` walks the topic's levels straight down and copies one
dict, the broker's hot path.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final, Generic, TypeVar

__all__ = ["TopicTrie"]

_S = TypeVar("_S", bound=Hashable)

_SEP: Final = "/"
_PLUS: Final = "+"
_HASH: Final = "#"


class _Node(Generic[_S]):
    """One trie node; it lives while it holds subscribers or has children."""

    __slots__ = ("children", "hash", "plus", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node[_S]] = {}
        self.plus: _Node[_S] | None = None
        self.hash: _Node[_S] | None = None
        self.subs: dict[_S, int] = {}

    def is_empty(self) -> bool:
        return not self.subs and not self.children and self.plus is None and self.hash is None


def _merge(result: dict[_S, int], subs: dict[_S, int]) -> dict[_S, int]:
    """Combine a partial result with a node's subscribers, keeping the highest qos of each.

    Loops over the smaller of the two, so many exact subscribers plus a few wildcard ones cost
    a dict copy and a few lookups. Returns the combined dict, which may be ``result`` itself.
    """
    if len(result) < len(subs):
        result, subs = subs.copy(), result
    for subscriber, qos in subs.items():
        old = result.get(subscriber)
        if old is None or qos > old:
            result[subscriber] = qos
    return result


class TopicTrie(Generic[_S]):
    """An index from topic filters to subscribers, answering which subscribers a topic reaches.

    A subscriber is any hashable object (the broker uses its ``Subscriber`` objects); each
    (filter, subscriber) pair carries a qos. The class is generic in the subscriber type for
    type checkers (``TopicTrie[Subscriber]``); at run time any hashable object is accepted.
    """

    __slots__ = ("_count", "_root", "_wildcards")

    def __init__(self) -> None:
        """Create an empty trie."""
        self._root: _Node[_S] = _Node()
        self._count = 0
        self._wildcards = 0

    def subscribe(self, topic_filter: str, subscriber: _S, qos: int = 1) -> bool:
        """Add the pair (topic_filter, subscriber), or replace its qos if it exists.

        Args:
            topic_filter: A ``/``-separated filter that may contain ``+`` and ``#`` levels.
            subscriber: Any hashable object.
            qos: The quality of service of this subscription.

        Returns:
            True if the pair is new, False if it existed (its qos is then replaced).
        """
        node = self._root
        wildcard = False
        for level in topic_filter.split(_SEP):
            if level == _PLUS:
                wildcard = True
                child = node.plus
                if child is None:
                    child = node.plus = _Node()
            elif level == _HASH:
                wildcard = True
                child = node.hash
                if child is None:
                    child = node.hash = _Node()
            else:
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _Node()
            node = child
        is_new = subscriber not in node.subs
        node.subs[subscriber] = qos
        if is_new:
            self._count += 1
            if wildcard:
                self._wildcards += 1
        return is_new

    def unsubscribe(self, topic_filter: str, subscriber: _S) -> bool:
        """Remove the pair (topic_filter, subscriber) and prune the nodes it leaves empty.

        Args:
            topic_filter: The filter exactly as it was subscribed.
            subscriber: The subscriber it was subscribed with.

        Returns:
            True if the pair was removed, False if it was absent.
        """
        node = self._root
        path: list[tuple[_Node[_S], str]] = []
        wildcard = False
        for level in topic_filter.split(_SEP):
            if level == _PLUS:
                wildcard = True
                child = node.plus
            elif level == _HASH:
                wildcard = True
                child = node.hash
            else:
                child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if subscriber not in node.subs:
            return False
        del node.subs[subscriber]
        self._count -= 1
        if wildcard:
            self._wildcards -= 1
        # Walk back up, unlinking each node that is now empty; stop at the first one still in use.
        while path and node.is_empty():
            parent, level = path.pop()
            if level == _PLUS:
                parent.plus = None
            elif level == _HASH:
                parent.hash = None
            else:
                del parent.children[level]
            node = parent
        return True

    def match(self, topic: str) -> dict[_S, int]:
        """Find every subscriber with at least one filter matching a topic.

        Args:
            topic: A ``/``-separated topic name.

        Returns:
            A new dict mapping each matching subscriber to the highest qos among its matching
            filters; the caller may mutate it.
        """
        levels = topic.split(_SEP)
        if not self._wildcards:
            node = self._root
            for level in levels:
                child = node.children.get(level)
                if child is None:
                    return {}
                node = child
            return dict(node.subs)
        result: dict[_S, int] = {}
        # §4.7.2: a leading wildcard never matches a topic whose first level starts with "$".
        wild = not levels[0].startswith("$")
        nodes = [self._root]
        for level in levels:
            found: list[_Node[_S]] = []
            for node in nodes:
                if wild:
                    if node.hash is not None and node.hash.subs:
                        result = _merge(result, node.hash.subs)
                    if node.plus is not None:
                        found.append(node.plus)
                child = node.children.get(level)
                if child is not None:
                    found.append(child)
            if not found:
                return result
            nodes = found
            wild = True
        for node in nodes:
            if node.subs:
                result = _merge(result, node.subs)
            # "#" also matches its parent level: "a/#" matches "a".
            if node.hash is not None and node.hash.subs:
                result = _merge(result, node.hash.subs)
        return result

    def has_subscribers(self, topic: str) -> bool:
        """Tell whether any filter matches a topic, without building the result of ``match``.

        Args:
            topic: A ``/``-separated topic name.

        Returns:
            True if ``match(topic)`` would be non-empty.
        """
        levels = topic.split(_SEP)
        if not self._wildcards:
            node = self._root
            for level in levels:
                child = node.children.get(level)
                if child is None:
                    return False
                node = child
            return bool(node.subs)
        wild = not levels[0].startswith("$")
        nodes = [self._root]
        for level in levels:
            found: list[_Node[_S]] = []
            for node in nodes:
                if wild:
                    if node.hash is not None and node.hash.subs:
                        return True
                    if node.plus is not None:
                        found.append(node.plus)
                child = node.children.get(level)
                if child is not None:
                    found.append(child)
            if not found:
                return False
            nodes = found
            wild = True
        return any(node.subs or (node.hash is not None and node.hash.subs) for node in nodes)

    def __len__(self) -> int:
        """Return the number of (filter, subscriber) pairs."""
        return self._count

    def node_count(self) -> int:
        """Count the trie's nodes besides the root, walking the whole trie.

        Returns:
            The number of nodes; 0 once every pair has been unsubscribed.
        """
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            if node.plus is not None:
                stack.append(node.plus)
            if node.hash is not None:
                stack.append(node.hash)
            count += 1
        return count - 1
