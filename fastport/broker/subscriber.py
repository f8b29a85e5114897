"""The receiving side of a client: its filters, its unacked messages and its queue.

A ``Subscriber`` belongs to one connection, or, for a durable client (``clientId`` with
``"durable": true``), outlives its connections: while it is offline its filters stay in
the session's index, so matching QoS 1 messages wait in its queue until it resumes or
its ``durableTtl`` runs out.

``inflight`` maps messageId -> ``Inflight`` (``fastport._speedups``) for messages sent and not acked yet, kept in
order of their next retry (a dict preserves insertion order; a retried entry is moved
to the end, and every entry gets the same ``retryInterval``, so the first entry is
always the next one due). ``queue`` holds messages waiting for a free inflight slot or
for the client to come back, in publish order.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastport._speedups import Inflight
    from fastport.broker.connection import Connection
    from fastport.broker.message import Message
    from fastport.broker.sessions import Session


class Subscriber:
    """A client's subscriptions and the delivery state of each message sent or queued to it (data only:
    ``fastport.broker.delivery`` and ``fastport.broker.durable`` act on it)."""

    __slots__ = (
        "session",
        "client_id",
        "durable",
        "connection",
        "filters",
        "inflight",
        "queue",
        "queued_bytes",
        "dropped_offline",
        "retry_handle",
        "ttl_handle",
        "released",
    )

    def __init__(self, session: Session, client_id: str | None, durable: bool) -> None:
        self.session = session
        self.client_id = client_id
        self.durable = durable
        self.connection: Connection | None = None
        self.filters: dict[str, int] = {}
        self.inflight: dict[str, Inflight[Message]] = {}
        self.queue: deque[Message] | None = None
        self.queued_bytes = 0
        self.dropped_offline = 0
        self.retry_handle: int | None = None
        self.ttl_handle: int | None = None
        self.released = False

    def __repr__(self) -> str:
        return (
            f"<Subscriber client_id={self.client_id!r} durable={self.durable} online={self.connection is not None}"
            f" inflight={len(self.inflight)} queued={len(self.queue or ())}>"
        )
