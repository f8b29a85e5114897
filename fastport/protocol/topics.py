"""Topic and topic-filter rules.

A topic is a ``/``-separated hierarchical string (``sensors/room1/temp``). Levels may be
empty (``a//b``). Rules, checked here once so the topic index can trust its input:

* a topic is a non-empty ``str`` of at most ``max_length`` characters and ``max_depth``
  levels, with no NUL character;
* a *publish* topic contains no wildcard character (``+`` or ``#``);
* a *filter* (subscribe) may use ``+`` as a whole level (exactly one level) and ``#``
  as the whole last level (that level's parent and everything below, MQTT 3.1.1 §4.7.1);
* a topic whose first level starts with ``$`` is not matched by a filter starting with a
  wildcard (MQTT 3.1.1 §4.7.2); the index implements that.
"""

from __future__ import annotations

from typing import Final

from fastport.errors import InvalidTopic

SEPARATOR: Final = "/"
SINGLE_LEVEL: Final = "+"
MULTI_LEVEL: Final = "#"
DEFAULT_MAX_LENGTH: Final = 1024
DEFAULT_MAX_DEPTH: Final = 32


def _check_common(topic: object, what: str, max_length: int, max_depth: int) -> str:
    if not isinstance(topic, str):
        raise InvalidTopic(f"{what} must be a string", field="topic")
    if not topic:
        raise InvalidTopic(f"{what} must not be empty", field="topic")
    if len(topic) > max_length:
        raise InvalidTopic(f"{what} too long: {len(topic)} > {max_length}", field="topic")
    if "\x00" in topic:
        raise InvalidTopic(f"{what} must not contain NUL", field="topic")
    depth = topic.count(SEPARATOR) + 1
    if depth > max_depth:
        raise InvalidTopic(f"{what} too deep: {depth} > {max_depth} levels", field="topic")
    return topic


def validate_topic(topic: object, *, max_length: int = DEFAULT_MAX_LENGTH, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """Check a publish topic and return it.

    Raises:
        InvalidTopic: the topic breaks a rule of this module.
    """
    checked = _check_common(topic, "topic", max_length, max_depth)
    if SINGLE_LEVEL in checked or MULTI_LEVEL in checked:
        raise InvalidTopic("wildcards (+, #) are not allowed in a publish topic", field="topic")
    return checked


def validate_filter(
    topic_filter: object, *, max_length: int = DEFAULT_MAX_LENGTH, max_depth: int = DEFAULT_MAX_DEPTH
) -> str:
    """Check a subscription filter (``+`` and ``#`` allowed as whole levels) and return it.

    Raises:
        InvalidTopic: the filter breaks a rule of this module.
    """
    checked = _check_common(topic_filter, "topic filter", max_length, max_depth)
    if SINGLE_LEVEL not in checked and MULTI_LEVEL not in checked:
        return checked
    levels = checked.split(SEPARATOR)
    last = len(levels) - 1
    for position, level in enumerate(levels):
        if MULTI_LEVEL in level and (level != MULTI_LEVEL or position != last):
            raise InvalidTopic("'#' must be a whole level and the last one", field="topic")
        if SINGLE_LEVEL in level and level != SINGLE_LEVEL:
            raise InvalidTopic("'+' must be a whole level", field="topic")
    return checked


def is_wildcard(topic_filter: str) -> bool:
    """Return True if a (valid) filter contains a wildcard level."""
    return SINGLE_LEVEL in topic_filter or MULTI_LEVEL in topic_filter


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Return True if the (valid) ``topic_filter`` matches the (valid) publish ``topic``.

    The reference semantics of the topic index, used where one filter meets many topics
    (retained messages on subscribe) and by the client to route what it receives.
    """
    if not is_wildcard(topic_filter):
        return topic_filter == topic
    if topic.startswith("$") and topic_filter[:1] in (SINGLE_LEVEL, MULTI_LEVEL):
        return False
    filter_levels = topic_filter.split(SEPARATOR)
    topic_levels = topic.split(SEPARATOR)
    for position, level in enumerate(filter_levels):
        if level == MULTI_LEVEL:
            return True
        if position >= len(topic_levels):
            return False
        if level != SINGLE_LEVEL and level != topic_levels[position]:
            return False
    return len(filter_levels) == len(topic_levels)
