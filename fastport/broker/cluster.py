"""The scale-out seam: what the broker asks of other nodes, and what they tell it.

The broker calls its ``ClusterLink`` unconditionally; the default ``NullClusterLink`` (one node)
does nothing and knows no other node. ``RedisEngine`` (``fastport.engines.redis``) is the real
link and the only place that knows its wire format. Through a link the broker:

* forwards each publish it accepted, and the first ack of a message another node accepted;
* shares sessions: created and looked up by name (``SessionRecord``), suspended, dropped;
* hands durable clients between nodes: a node claims a durable client when it connects there,
  and fetches its state (``DurableState``) from the node that held it.

What other nodes send comes back through the ``ClusterHandler`` the broker passes to ``start``.
Origins in ``HeldMessage`` are relative to the node reading them: None means "accepted here".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fastport.broker.journal import SessionRecord
    from fastport.protocol.frames import Publish


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """One message a durable client holds: sent ``attempts`` times (``sent``), or still queued."""

    message_id: str
    topic: str
    data: str
    hash: str | None
    timestamp: int | float
    qos: int
    attempts: int
    sent: bool
    #: The node that accepted the publish (its publisher waits there), or None: this node.
    origin: str | None


@dataclass(frozen=True, slots=True)
class DurableState:
    """A durable client handed from one node to another: its filters and held messages, in publish order."""

    filters: dict[str, int]
    held: list[HeldMessage]


class ClusterHandler(Protocol):
    """What a link calls on its broker when another node says something."""

    def on_remote_publish(self, session_name: str, publish: Publish, origin: str) -> None:
        """A publish accepted by node ``origin``."""

    def on_remote_ack(self, session_name: str, message_id: str) -> None:
        """A subscriber on another node acked a message published here."""

    def on_remote_drop(self, session_name: str) -> None:
        """Another node dropped a session."""

    def on_remote_suspend(self, session_name: str, suspended: bool) -> None:
        """Another node suspended or resumed a session."""

    def on_handover_request(self, session_name: str, client_id: str) -> DurableState | None:
        """Give up a durable client held here: its state, or None if this node does not hold it."""


class ClusterLink(Protocol):
    """This node's link to the others (see the module docstring)."""

    @property
    def multi_node(self) -> bool:
        """Whether other nodes may exist (then a message's first ack may come from one of them); constant."""

    async def start(self, handler: ClusterHandler) -> None:
        """Join the cluster; from now on ``handler`` hears from the other nodes."""

    async def close(self) -> None:
        """Leave the cluster."""

    def forward_publish(self, session_name: str, publish: Publish, timestamp: int | float) -> None:
        """Send a publish accepted here to the other nodes."""

    def forward_ack(self, origin: str, session_name: str, message_id: str) -> None:
        """Tell node ``origin`` that its message was acked here."""

    async def create_session(self, record: SessionRecord) -> bool:
        """Share a new session; False if another node has one of that name."""

    async def load_session(self, name: str) -> SessionRecord | None:
        """A session another node created, or None."""

    async def set_suspended(self, name: str, suspended: bool) -> None:
        """Record a suspension or resumption and tell the other nodes."""

    async def drop_session(self, name: str) -> None:
        """Forget a session everywhere and tell the other nodes."""

    def claim_durable(self, session_name: str, client_id: str) -> None:
        """Record, in the background, that a durable client now lives on this node."""

    def release_durable(self, session_name: str, client_id: str) -> None:
        """Forget, in the background, that a durable client that ended here lived on this node."""

    async def fetch_durable(self, session_name: str, client_id: str) -> DurableState | None:
        """Take a durable client over from the node that holds it; None if none does (or answers)."""


class NullClusterLink:
    """The single-node default: there are no other nodes."""

    __slots__ = ()

    @property
    def multi_node(self) -> bool:
        """No other node exists."""
        return False

    async def start(self, handler: ClusterHandler) -> None:
        """Nothing to join."""

    async def close(self) -> None:
        """Nothing to leave."""

    def forward_publish(self, session_name: str, publish: Publish, timestamp: int | float) -> None:
        """No one to forward to."""

    def forward_ack(self, origin: str, session_name: str, message_id: str) -> None:
        """No one to forward to."""

    async def create_session(self, record: SessionRecord) -> bool:
        """No other node can hold the name."""
        return True

    async def load_session(self, name: str) -> SessionRecord | None:
        """No other node made it."""
        return None

    async def set_suspended(self, name: str, suspended: bool) -> None:
        """No one to tell."""

    async def drop_session(self, name: str) -> None:
        """No one to tell."""

    def claim_durable(self, session_name: str, client_id: str) -> None:
        """No one to tell."""

    def release_durable(self, session_name: str, client_id: str) -> None:
        """No one to tell."""

    async def fetch_durable(self, session_name: str, client_id: str) -> DurableState | None:
        """No other node holds it."""
        return None
