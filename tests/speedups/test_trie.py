"""TopicTrie behaviour, on both twins, against the rules in ``fastport._speedups.trie_py``."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Literal, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from speedups.conftest import Twin

    from fastport._speedups.trie_py import TopicTrie

SETTINGS = settings(max_examples=150, deadline=None)

_S = TypeVar("_S", bound=Hashable)

#: One step of a TRIE_OPS run: subscribe (filter, subscriber, QoS), unsubscribe (filter, subscriber), match (topic).
TrieOp = tuple[Literal["sub"], str, int, int] | tuple[Literal["unsub"], str, int] | tuple[Literal["match"], str]


def brute_matches(topic_filter: str, topic: str) -> bool:
    """Decide one (filter, topic) pair straight from the rules, with no trie."""
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    # MQTT 3.1.1 §4.7.2: leading wildcards skip "$" topics.
    if levels[0].startswith("$") and wanted[0] in ("+", "#"):
        return False
    for i, level in enumerate(wanted):
        if level == "#":
            # Only as the last level, where it also matches the parent level.
            return i == len(wanted) - 1 and len(levels) >= i
        if i >= len(levels) or (level != "+" and level != levels[i]):
            return False
    return len(wanted) == len(levels)


def brute_match(pairs: dict[tuple[str, _S], int], topic: str) -> dict[_S, int]:
    result: dict[_S, int] = {}
    for (topic_filter, subscriber), qos in pairs.items():
        if brute_matches(topic_filter, topic) and qos > result.get(subscriber, -1):
            result[subscriber] = qos
    return result


@pytest.fixture
def trie(speedups: Twin) -> TopicTrie[Hashable]:
    return speedups.TopicTrie()


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/b", "a", False),
        ("a/b", "a/b/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a", False),
        ("a/+", "a/b/c", False),
        ("+/b", "a/b", True),
        ("+/+", "a/b", True),
        ("a/+/c", "a/x/c", True),
        ("a+", "ab", False),
        ("a+", "a+", True),
        ("a/#", "a", True),
        ("a/#", "a/b", True),
        ("a/#", "a/b/c", True),
        ("a/#", "b", False),
        ("a/#", "ab", False),
        ("a/+/#", "a/b", True),
        ("a/+/#", "a", False),
        ("#", "a", True),
        ("#", "a/b/c", True),
        ("#", "", True),
        ("#", "/", True),
        ("+", "", True),
        ("+", "a/b", False),
        # Empty levels are levels.
        ("a//b", "a//b", True),
        ("a/+/b", "a//b", True),
        ("a/b", "a//b", False),
        ("+/a", "/a", True),
        ("/a", "/a", True),
        ("/a", "a", False),
        ("a/", "a/", True),
        ("a/+", "a/", True),
        ("", "", True),
        ("", "a", False),
        # §4.7.2: no leading wildcard reaches a "$" topic; anything else does.
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("+", "$SYS", False),
        ("$SYS/#", "$SYS/x", True),
        ("$SYS/#", "$SYS", True),
        ("$SYS/+", "$SYS/x", True),
        ("a/+", "a/$x", True),
        ("a/#", "a/$x", True),
        ("#", "x$", True),
        # A "#" before the last level matches nothing.
        ("a/#/b", "a/x/b", False),
        ("#/b", "a/b", False),
    ],
)
def test_match_rules(trie: TopicTrie[Hashable], topic_filter: str, topic: str, expected: bool) -> None:
    assert brute_matches(topic_filter, topic) is expected
    trie.subscribe(topic_filter, "s", 1)
    assert trie.match(topic) == ({"s": 1} if expected else {})
    assert trie.has_subscribers(topic) is expected


def test_exact_topic_reaches_all_its_subscribers(trie: TopicTrie[Hashable]) -> None:
    for i in range(50):
        trie.subscribe("room/42", i, i % 3)
    trie.subscribe("room/43", "other")
    assert trie.match("room/42") == {i: i % 3 for i in range(50)}
    assert trie.match("room") == {}
    assert trie.match("room/42/x") == {}
    assert trie.has_subscribers("room/43")
    assert not trie.has_subscribers("room/44")


def test_highest_qos_wins_across_filters(trie: TopicTrie[Hashable]) -> None:
    trie.subscribe("a/b", "s", 0)
    trie.subscribe("a/+", "s", 2)
    trie.subscribe("#", "s", 1)
    trie.subscribe("a/#", "t", 0)
    assert trie.match("a/b") == {"s": 2, "t": 0}
    assert trie.match("a/c") == {"s": 2, "t": 0}
    assert trie.match("a") == {"s": 1, "t": 0}


def test_subscribe_is_a_set_and_replaces_qos(trie: TopicTrie[Hashable]) -> None:
    assert trie.subscribe("a/b", "s", 0) is True
    assert trie.subscribe("a/b", "s", 2) is False
    assert len(trie) == 1
    assert trie.match("a/b") == {"s": 2}
    assert trie.subscribe("a/b", "t") is True
    assert trie.match("a/b") == {"s": 2, "t": 1}
    assert len(trie) == 2


def test_unsubscribe_removes_one_pair(trie: TopicTrie[Hashable]) -> None:
    trie.subscribe("a/+", "s")
    trie.subscribe("a/+", "t")
    trie.subscribe("a/b", "s")
    assert trie.unsubscribe("a/+", "s") is True
    assert trie.unsubscribe("a/+", "s") is False
    assert trie.unsubscribe("a/#", "s") is False
    assert trie.unsubscribe("x/y/z", "s") is False
    assert trie.unsubscribe("a/b", "nobody") is False
    assert trie.match("a/b") == {"s": 1, "t": 1}
    assert trie.match("a/c") == {"t": 1}
    assert len(trie) == 2


def test_unsubscribing_everything_prunes_every_node(trie: TopicTrie[Hashable]) -> None:
    filters = ["a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "/x", "a//", "$SYS/#", "a/#/b", ""]
    for topic_filter in filters:
        trie.subscribe(topic_filter, "s")
        trie.subscribe(topic_filter, "t")
    assert trie.node_count() > 0
    for topic_filter in filters:
        assert trie.unsubscribe(topic_filter, "s") is True
    assert trie.node_count() > 0
    for topic_filter in reversed(filters):
        assert trie.unsubscribe(topic_filter, "t") is True
    assert len(trie) == 0
    assert trie.node_count() == 0
    assert trie.match("a/b/c") == {}


def test_pruning_keeps_nodes_still_in_use(trie: TopicTrie[Hashable]) -> None:
    trie.subscribe("a/b/c", "s")
    trie.subscribe("a", "s")
    assert trie.node_count() == 3
    trie.unsubscribe("a/b/c", "s")
    assert trie.node_count() == 1
    trie.unsubscribe("a", "s")
    assert trie.node_count() == 0


def test_fast_path_returns_after_wildcards_leave(trie: TopicTrie[Hashable]) -> None:
    trie.subscribe("a/b", "s")
    trie.subscribe("a/+", "t")
    assert trie.match("a/b") == {"s": 1, "t": 1}
    trie.unsubscribe("a/+", "t")
    assert trie.match("a/b") == {"s": 1}
    assert trie.match("a/c") == {}


def test_match_returns_a_new_dict(trie: TopicTrie[Hashable]) -> None:
    trie.subscribe("a", "s")
    first = trie.match("a")
    first["intruder"] = 2
    del first["s"]
    assert trie.match("a") == {"s": 1}
    trie.subscribe("+", "t")
    second = trie.match("a")
    second.clear()
    assert trie.match("a") == {"s": 1, "t": 1}


def test_subscribers_are_any_hashable(trie: TopicTrie[Hashable]) -> None:
    class Connection:
        pass

    conn = Connection()
    trie.subscribe("a", conn, 2)
    trie.subscribe("a", ("tuple", 1), 0)
    trie.subscribe("a", 7)
    assert trie.match("a") == {conn: 2, ("tuple", 1): 0, 7: 1}


def test_generic_in_the_subscriber_type(speedups: Twin) -> None:
    """``TopicTrie[Subscriber]`` is for type checkers; at run time it makes the same trie."""
    if not TYPE_CHECKING:  # the twin under test; a type checker sees the reference class, imported above
        TopicTrie = speedups.TopicTrie
    trie = TopicTrie[str]()
    assert type(trie) is TopicTrie
    trie.subscribe("a", "alice")
    assert trie.match("a") == {"alice": 1}


def test_empty_trie(trie: TopicTrie[Hashable]) -> None:
    assert len(trie) == 0
    assert trie.node_count() == 0
    assert trie.match("") == {}
    assert not trie.has_subscribers("a/b")


FILTER_LEVELS = st.sampled_from(["a", "b", "$s", "", "+", "#"])
TOPIC_LEVELS = st.sampled_from(["a", "b", "$s", "", "+", "#"])
FILTERS = st.lists(FILTER_LEVELS, min_size=1, max_size=4).map("/".join)
TOPICS = st.lists(TOPIC_LEVELS, min_size=1, max_size=4).map("/".join)
SUBSCRIBERS = st.integers(0, 3)
QOS = st.integers(0, 2)
TRIE_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("sub"), FILTERS, SUBSCRIBERS, QOS),
        st.tuples(st.just("unsub"), FILTERS, SUBSCRIBERS),
        st.tuples(st.just("match"), TOPICS),
    ),
    max_size=60,
)


def run_trie_ops(trie: TopicTrie[int], ops: list[TrieOp]) -> list[object]:
    """Apply ops to trie, check each answer against the brute-force model, and log the answers."""
    pairs: dict[tuple[str, int], int] = {}
    answers: list[object] = []
    for op in ops:
        if op[0] == "sub":
            _, topic_filter, subscriber, qos = op
            answer: object = trie.subscribe(topic_filter, subscriber, qos)
            assert answer is ((topic_filter, subscriber) not in pairs)
            pairs[(topic_filter, subscriber)] = qos
        elif op[0] == "unsub":
            _, topic_filter, subscriber = op
            answer = trie.unsubscribe(topic_filter, subscriber)
            assert answer is (pairs.pop((topic_filter, subscriber), None) is not None)
        else:
            (_, topic) = op
            answer = trie.match(topic)
            assert answer == brute_match(pairs, topic)
            assert trie.has_subscribers(topic) is bool(answer)
        assert len(trie) == len(pairs)
        answers.append(answer)
    for topic_filter, subscriber in list(pairs):
        assert trie.unsubscribe(topic_filter, subscriber) is True
    assert len(trie) == 0
    assert trie.node_count() == 0
    return answers


@SETTINGS
@given(ops=TRIE_OPS)
def test_trie_agrees_with_brute_force(speedups: Twin, ops: list[TrieOp]) -> None:
    run_trie_ops(speedups.TopicTrie(), ops)


@SETTINGS
@given(filters=st.lists(st.text(max_size=8), max_size=6), topics=st.lists(st.text(max_size=8)))
def test_any_str_is_safe(speedups: Twin, filters: list[str], topics: list[str]) -> None:
    trie = speedups.TopicTrie()
    pairs = {(topic_filter, i): i for i, topic_filter in enumerate(filters)}
    for (topic_filter, subscriber), qos in pairs.items():
        trie.subscribe(topic_filter, subscriber, qos)
    for topic in topics + filters:
        assert trie.match(topic) == brute_match(pairs, topic)
    for topic_filter, subscriber in pairs:
        trie.unsubscribe(topic_filter, subscriber)
    assert trie.node_count() == 0


@pytest.mark.compiled
@SETTINGS
@given(ops=TRIE_OPS)
def test_twins_agree(twins: tuple[Twin, Twin], ops: list[TrieOp]) -> None:
    compiled, python = twins
    assert run_trie_ops(compiled.TopicTrie(), ops) == run_trie_ops(python.TopicTrie(), ops)
