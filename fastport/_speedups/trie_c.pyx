# cython: language_level=3, embedsignature=True, annotation_typing=False
"""TopicTrie, compiled twin of ``fastport._speedups.trie_py``.

Same rules, names, signatures, results and exceptions as the reference twin, whose module and
method docstrings are the documentation. Nodes are ``cdef`` classes with typed fields, so the
exact-topic fast path is a chain of dict lookups and one dict copy. ``TopicTrie[Subscriber]``
works at run time as in the reference twin (a ``Generic``), for annotations that are evaluated.
"""

cimport cython

from types import GenericAlias

__all__ = ["TopicTrie"]


@cython.final
@cython.freelist(64)
cdef class _Node:
    cdef dict children
    cdef _Node plus
    cdef _Node hash
    cdef dict subs

    def __cinit__(self):
        self.children = {}
        self.subs = {}

    cdef inline bint is_empty(self):
        return not self.subs and not self.children and self.plus is None and self.hash is None


cdef inline list _split(object text):
    # Exact str takes the C fast path; anything else behaves as in the Python twin.
    if type(text) is str:
        return (<str>text).split("/")
    return text.split("/")


cdef dict _merge(dict result, dict subs):
    # Loops over the smaller dict; returns the combined one (see the Python twin).
    cdef object subscriber, qos, old
    if len(result) < len(subs):
        result, subs = subs.copy(), result
    for subscriber, qos in subs.items():
        old = result.get(subscriber)
        if old is None or qos > old:
            result[subscriber] = qos
    return result


@cython.final
cdef class TopicTrie:
    """An index from topic filters to subscribers, answering which subscribers a topic reaches."""

    cdef _Node _root
    cdef Py_ssize_t _count
    cdef Py_ssize_t _wildcards

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0
        self._wildcards = 0

    def __class_getitem__(cls, subscriber_type):
        return GenericAlias(cls, subscriber_type)

    def subscribe(self, topic_filter: str, subscriber: _S, qos: int = 1) -> bool:
        """Add the pair (topic_filter, subscriber), or replace its qos; True if it is new."""
        cdef _Node node = self._root
        cdef _Node child
        cdef bint wildcard = False
        cdef bint is_new
        for level in _split(topic_filter):
            if level == "+":
                wildcard = True
                child = node.plus
                if child is None:
                    child = node.plus = _Node()
            elif level == "#":
                wildcard = True
                child = node.hash
                if child is None:
                    child = node.hash = _Node()
            else:
                child = node.children.get(level)
                if child is None:
                    child = _Node()
                    node.children[level] = child
            node = child
        is_new = subscriber not in node.subs
        node.subs[subscriber] = qos
        if is_new:
            self._count += 1
            if wildcard:
                self._wildcards += 1
        return is_new

    def unsubscribe(self, topic_filter: str, subscriber: _S) -> bool:
        """Remove the pair (topic_filter, subscriber) and prune emptied nodes; False if absent."""
        cdef _Node node = self._root
        cdef _Node child, parent
        cdef list path = []
        cdef bint wildcard = False
        for level in _split(topic_filter):
            if level == "+":
                wildcard = True
                child = node.plus
            elif level == "#":
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
        while path and node.is_empty():
            parent, level = path.pop()
            if level == "+":
                parent.plus = None
            elif level == "#":
                parent.hash = None
            else:
                del parent.children[level]
            node = parent
        return True

    def match(self, topic: str) -> dict[_S, int]:
        """Map every subscriber with a filter matching topic to its highest qos (a new dict)."""
        cdef list levels = _split(topic)
        cdef _Node node = self._root
        cdef object child
        cdef dict result
        cdef list nodes, found
        cdef bint wild
        if self._wildcards == 0:
            for level in levels:
                child = node.children.get(level)
                if child is None:
                    return {}
                node = <_Node>child
            return node.subs.copy()
        result = {}
        # MQTT 3.1.1 §4.7.2: a leading wildcard never matches a topic whose first level starts
        # with "$".
        wild = not (<str?>levels[0]).startswith("$")
        nodes = [node]
        for level in levels:
            found = []
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
            if node.hash is not None and node.hash.subs:
                result = _merge(result, node.hash.subs)
        return result

    def has_subscribers(self, topic: str) -> bool:
        """Tell whether match(topic) would be non-empty, without building it."""
        cdef list levels = _split(topic)
        cdef _Node node = self._root
        cdef object child
        cdef list nodes, found
        cdef bint wild
        if self._wildcards == 0:
            for level in levels:
                child = node.children.get(level)
                if child is None:
                    return False
                node = <_Node>child
            return bool(node.subs)
        wild = not (<str?>levels[0]).startswith("$")
        nodes = [node]
        for level in levels:
            found = []
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
        for node in nodes:
            if node.subs or (node.hash is not None and node.hash.subs):
                return True
        return False

    def __len__(self) -> int:
        """Return the number of (filter, subscriber) pairs."""
        return self._count

    def node_count(self) -> int:
        """Count the trie's nodes besides the root, walking the whole trie."""
        cdef Py_ssize_t count = 0
        cdef list stack = [self._root]
        cdef _Node node
        while stack:
            node = <_Node>stack.pop()
            stack.extend(node.children.values())
            if node.plus is not None:
                stack.append(node.plus)
            if node.hash is not None:
                stack.append(node.hash)
            count += 1
        return count - 1
