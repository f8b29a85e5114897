"""A bounded set of recently received messageIds, so a redelivered message is handed over once."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

DEFAULT_CAPACITY: Final = 10_000


class SeenIds:
    """Least-recently-seen eviction over at most ``capacity`` ids.

    A redelivery arrives within the broker's retry window, long before 10 000 newer
    messages have pushed its id out, so a bounded memory is enough.
    """

    __slots__ = ("_ids", "capacity")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, message_id: str) -> bool:
        """Return True if ``message_id`` was added and not evicted since; refreshes it."""
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return True
        return False

    def add(self, message_id: str) -> None:
        """Remember ``message_id``, evicting the least recently seen id when full."""
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
