"""The dedupe window of a session: accepted messages by messageId, oldest first.

A publish whose messageId is here (and whose window has not ended) is a duplicate. Entries
leave in acceptance order once their window ended, or when the window is over capacity.

The order lives in a deque beside the dict. Pruning a dict from its front (``next(iter(d))``
after deleting the first entries) scans the deleted slots again on every call until the dict is
resized: about 7 µs per publish once a window of 100,000 ids is full. Here pruning is O(1) per
entry. A messageId accepted again (after its window ended) moves to the back: its older deque
entry is skipped as stale, because the dict no longer maps the id to that message.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fastport.broker.message import Message


#: Message ids remembered per session for dedupe, at most.
DEDUPE_CAPACITY: Final = 100_000


class DedupeWindow:
    """Messages by messageId in acceptance order, bounded by time and by ``capacity``."""

    __slots__ = ("_by_id", "_order", "capacity")

    def __init__(self, capacity: int = DEDUPE_CAPACITY) -> None:
        self.capacity = capacity
        self._by_id: dict[str, Message] = {}
        self._order: deque[Message] = deque()

    def get(self, message_id: str) -> Message | None:
        """The message accepted with ``message_id``, if still remembered."""
        return self._by_id.get(message_id)

    def remember(self, message: Message) -> None:
        """Add ``message`` as the newest entry (replacing an older one with its messageId)."""
        self._by_id[message.message_id] = message
        self._order.append(message)

    def prune(self, now_ms: int) -> None:
        """Forget the oldest entries whose window ended by ``now_ms``, and any over capacity."""
        order = self._order
        by_id = self._by_id
        while order:
            oldest = order[0]
            if by_id.get(oldest.message_id) is not oldest:
                order.popleft()  # stale: the id was accepted again later
                continue
            if oldest.dedupe_until_ms > now_ms and len(by_id) < self.capacity:
                return
            order.popleft()
            del by_id[oldest.message_id]

    def clear(self) -> None:
        """Forget everything (the session was dropped)."""
        self._by_id.clear()
        self._order.clear()

    def __len__(self) -> int:
        return len(self._by_id)
