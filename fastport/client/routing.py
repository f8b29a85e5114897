"""Which of the client's topic filters a received message's topic matches (MQTT 3.1.1 §4.7 rules).

``+`` matches exactly one level, ``#`` (the whole last level) matches its parent level and
everything below, and a filter starting with a wildcard does not match a topic whose first
level starts with ``$`` (§4.7.2). Filters are checked by ``protocol.topics.validate_filter``
before they get here.
"""

from __future__ import annotations

from fastport.protocol.topics import MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL, is_wildcard


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Return True if the (valid) ``topic_filter`` matches the publish ``topic``."""
    if not is_wildcard(topic_filter):
        return topic_filter == topic
    if topic.startswith("$") and topic_filter[0] in (SINGLE_LEVEL, MULTI_LEVEL):
        return False
    levels = topic.split(SEPARATOR)
    filter_levels = topic_filter.split(SEPARATOR)
    for position, wanted in enumerate(filter_levels):
        if wanted == MULTI_LEVEL:
            return True
        if position >= len(levels):
            return False
        if wanted != SINGLE_LEVEL and wanted != levels[position]:
            return False
    return len(levels) == len(filter_levels)
