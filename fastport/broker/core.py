"""The broker: connects each WebSocket, routes each of its frames to its session, and wires the jobs.

Each job has its own module; ``Broker`` builds them once and dispatches to them:

* ``handshake``: init deadline, ``init``, authentication throttle, takeover, frames queued meanwhile;
* ``delivery``: publish, fan-out, queues, acks, retries; ``retained``: retained messages;
* ``durable``: subscriber lifecycle, durable clients, rebuild and handover;
* ``session_admin``: create, drop, suspend, expire; ``files``: the file relay;
* ``journal`` and ``cluster``: the persistence and scale-out seams (null objects by default).

Every handler is synchronous except ``init`` (the password check runs in an executor).
Each session's state is reached only through the connection's own ``session``, so a frame can
never touch another tenant. Every bad frame is answered with an error frame (``errors.py``
says which) and the connection stays open, except where the error carries a close code
(invalid UTF-8: 1007, as RFC 6455 requires).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from fastport.broker.cluster import ClusterLink, DurableState, NullClusterLink
from fastport.broker.connection import Connection, ConnState, Sink
from fastport.broker.delivery import Delivery
from fastport.broker.durable import Subscribers
from fastport.broker.files import FileRelay
from fastport.broker.handshake import Handshake
from fastport.broker.journal import Journal, NullJournal
from fastport.broker.limits import PublishRate
from fastport.broker.retained import RetainedMessages
from fastport.broker.scheduler import Scheduler
from fastport.broker.session_admin import SessionAdmin
from fastport.broker.sessions import Session, SessionRegistry
from fastport.broker.stats import BrokerCounters, DeliveryCounters
from fastport.broker.subscriber import Subscriber
from fastport.config import BrokerLimits
from fastport.errors import CloseCode, ErrorCode, FastportError, InvalidUtf8, LimitExceeded, ProtocolError
from fastport.protocol import codec
from fastport.protocol.frames import Ack, Disconnect, FileControl, Init, Publish, Subscribe, Unsubscribe
from fastport.protocol.topics import validate_filter, validate_topic

logger = logging.getLogger("fastport.broker")

# Enum member lookups cost an attribute search on the enum class (~70 ns each); the per-frame paths use these.
_OPEN: Final = ConnState.OPEN
_AUTHENTICATING: Final = ConnState.AUTHENTICATING
_CLOSED: Final = ConnState.CLOSED

_SESSION_INVALID = ProtocolError("Session suspended or invalid", code=ErrorCode.SESSION_INVALID)
_INTERNAL = FastportError("Internal server error", code=ErrorCode.INTERNAL)


def _not_initialized() -> ProtocolError:
    return ProtocolError("Not initialized", code=ErrorCode.NOT_INITIALIZED)


class Broker:
    """All sessions and connections of one process.

    Args:
        loop: the running event loop (drives the scheduler and the password executor).
        limits: per-connection and per-session limits.
        journal: where what a restart must see is recorded (default: nowhere, all in memory).
        cluster: the link to other broker processes (default: none, a single node).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: BrokerLimits | None = None,
        journal: Journal | None = None,
        cluster: ClusterLink | None = None,
    ) -> None:
        self.loop = loop
        self.limits = limits = limits or BrokerLimits()
        journal = journal or NullJournal()
        cluster = cluster or NullClusterLink()
        self.journal: Journal = journal
        self.cluster: ClusterLink = cluster
        self.counters = BrokerCounters()
        self.scheduler = scheduler = Scheduler(loop)
        self.sessions = SessionRegistry(cluster)
        delivery_counters = DeliveryCounters()
        self.retained = RetainedMessages(journal, delivery_counters)
        self.delivery = Delivery(scheduler, journal, cluster, self.retained, delivery_counters)
        self.subscribers = Subscribers(self.delivery, scheduler, journal, cluster, delivery_counters)
        self.handshake = Handshake(
            loop, scheduler, limits, self.sessions, self.subscribers, cluster, self.counters, self.receive
        )
        self.admin = SessionAdmin(loop, scheduler, self.sessions, self.subscribers, journal, cluster, self.disconnect)
        self.files = FileRelay(limits)
        self._publish_rate = PublishRate(limits, self.counters)
        self.connection_count = 0
        self.started_monotonic = time.monotonic()
        self._handlers: dict[type, Callable[[Connection, Any], None]] = {
            Publish: self._on_publish,
            Ack: self._on_ack,
            Subscribe: self._on_subscribe,
            Unsubscribe: self._on_unsubscribe,
            Init: self.handshake.on_init,
            FileControl: self._on_file_control,
            Disconnect: self._on_disconnect,
        }
        self._closing = False

    # ----------------------------------------------------------------- connections

    def connect(self, sink: Sink, remote: str = "") -> Connection:
        """Register a new WebSocket connection; it has ``init_timeout_s`` to complete ``init``."""
        self.connection_count += 1
        conn = Connection(sink, remote)
        self.handshake.start(conn)
        return conn

    def disconnect(self, conn: Connection, clean: bool = False) -> None:
        """Forget a closed connection.

        A durable client's subscriber is kept for its TTL; any other subscriber is released
        (its unacked messages stop waiting for it). Unless the connection ended cleanly
        (close code 1000 or a ``disconnect`` frame), its last will is published.
        """
        if conn.state is ConnState.CLOSED:
            return
        conn.state = ConnState.CLOSED
        self.connection_count -= 1
        self.handshake.stop(conn)
        conn.queued = None
        session = conn.session
        if session is None:
            return
        session.connections.discard(conn)
        subscriber = conn.subscriber
        if subscriber is not None and subscriber.connection is conn:
            self.subscribers.detach(subscriber)
        will, conn.will = conn.will, None
        if will is not None and not clean and not session.dropped and not self._closing:
            self.delivery.publish_will(session, will)

    def writable(self, conn: Connection) -> None:
        """``conn``'s transport drained below its limit: send what waited in its queue."""
        subscriber = conn.subscriber
        if conn.state is ConnState.OPEN and subscriber is not None and subscriber.connection is conn:
            self.delivery.drain(subscriber)

    def slow_consumer(self, conn: Connection) -> None:
        """``conn`` stayed over its outbound buffer limit too long: count it (the transport cuts it off, 4007)."""
        self.counters.slow_consumer_closes += 1
        logger.warning("closing connection #%d: slow consumer", conn.id, extra=conn.log_context())

    def receive(self, conn: Connection, payload: bytes) -> None:
        """Handle one complete text frame from ``conn``."""
        state = conn.state
        if state is _AUTHENTICATING:
            self.handshake.queue(conn, payload)
            return
        if state is _CLOSED:
            return
        try:
            obj = codec.parse(payload)
            # Acks, one per delivery, skip the typed frame and the handler table.
            message_id = codec.ack_message_id(obj) if state is _OPEN else None
            if message_id is None:
                frame = codec.frame_of(obj, payload)
        except InvalidUtf8 as exc:
            conn.close_for(exc)
            return
        except ProtocolError as exc:
            conn.reject(exc)
            return
        if message_id is not None:
            self._ack(conn, message_id)
            return
        try:
            self._handlers[type(frame)](conn, frame)
        except FastportError as exc:
            conn.reject(exc)
        except Exception:
            logger.exception("internal error handling a frame of connection #%d", conn.id, extra=conn.log_context())
            conn.sink.send(codec.encode_error(_INTERNAL))

    def receive_binary(self, conn: Connection, payload: bytes) -> None:
        """Handle one binary frame: a file chunk, forwarded unchanged to the file's topic."""
        if conn.state is not ConnState.OPEN:
            if conn.state is not ConnState.CLOSED:
                conn.reject(_not_initialized())
            return
        session = conn.session
        assert session is not None
        try:
            self.files.on_chunk(conn, session, payload)
        except ProtocolError as exc:
            conn.reject(exc)

    # -------------------------------------------------------------------- handlers

    def _session_of(self, conn: Connection) -> Session:
        if conn.state is not _OPEN:
            raise _not_initialized()
        session = conn.session
        assert session is not None
        return session

    def _subscriber_of(self, conn: Connection) -> tuple[Session, Subscriber]:
        session = self._session_of(conn)
        subscriber = conn.subscriber
        assert subscriber is not None
        return session, subscriber

    def _on_subscribe(self, conn: Connection, frame: Subscribe) -> None:
        session, subscriber = self._subscriber_of(conn)
        limits = self.limits
        try:
            topic_filter = validate_filter(
                frame.topic, max_length=limits.max_topic_length, max_depth=limits.max_topic_depth
            )
        except ProtocolError as exc:
            conn.reject(exc, "subscribe_response", topic=frame.topic)
            return
        filters = subscriber.filters
        if topic_filter not in filters and len(filters) >= limits.max_subscriptions_per_connection:
            self.counters.subscription_limit_hits += 1
            error = LimitExceeded(
                f"too many subscriptions: {limits.max_subscriptions_per_connection}",
                code=ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            )
            conn.reject(error, "subscribe_response", topic=topic_filter)
            return
        session.index.add(topic_filter, subscriber, frame.qos)
        subscriber.filters[topic_filter] = frame.qos
        self.subscribers.save(subscriber)
        conn.sink.send(codec.encode({"type": "subscribe_response", "success": True, "topic": topic_filter}))
        if session.retained:
            self.delivery.send_retained(subscriber, topic_filter, frame.qos)

    def _on_unsubscribe(self, conn: Connection, frame: Unsubscribe) -> None:
        session, subscriber = self._subscriber_of(conn)
        if frame.topic not in subscriber.filters:
            error = ProtocolError("Not subscribed", code=ErrorCode.NOT_SUBSCRIBED, field="topic")
            conn.reject(error, "unsubscribe_response", topic=frame.topic)
            return
        session.index.discard(frame.topic, subscriber)
        del subscriber.filters[frame.topic]
        self.subscribers.save(subscriber)
        conn.sink.send(codec.encode({"type": "unsubscribe_response", "success": True, "topic": frame.topic}))

    def _on_publish(self, conn: Connection, frame: Publish) -> None:
        session = self._session_of(conn)
        if session.suspended or session.dropped:
            conn.reject(_SESSION_INVALID, "publish_response", messageId=frame.message_id)
            return
        if not self._publish_rate.allow(conn, self.loop.time()):
            return
        limits = self.limits
        try:
            validate_topic(frame.topic, max_length=limits.max_topic_length, max_depth=limits.max_topic_depth)
        except ProtocolError as exc:
            conn.reject(exc, "publish_response", messageId=frame.message_id)
            return
        self.delivery.publish(session, conn, frame)

    def _on_ack(self, conn: Connection, frame: Ack) -> None:
        self._session_of(conn)
        self._ack(conn, frame.message_id)

    def _ack(self, conn: Connection, message_id: str) -> None:
        """Record an ack of an OPEN connection (``receive`` calls it for acks without building a frame)."""
        try:
            self.delivery.ack(conn.subscriber, message_id)  # type: ignore[arg-type]  # OPEN: it has one
        except ProtocolError as exc:
            conn.reject(exc, None, messageId=message_id)

    def _on_disconnect(self, conn: Connection, frame: Disconnect) -> None:
        self._session_of(conn)
        conn.will = None
        conn.sink.close(CloseCode.NORMAL, "bye")

    def _on_file_control(self, conn: Connection, frame: FileControl) -> None:
        self.files.on_control(conn, self._session_of(conn), frame)

    # ------------------------------------------------------- other nodes (ClusterHandler)

    def on_remote_publish(self, session_name: str, publish: Publish, origin: str) -> None:
        """Fan a publish accepted by another node out to this node's subscribers."""
        session = self.sessions.get(session_name)
        if session is not None:  # else no client of that session ever came here: nobody to deliver to
            self.delivery.publish(session, None, publish, origin=origin)

    def on_remote_ack(self, session_name: str, message_id: str) -> None:
        """A subscriber on another node acked a message published here."""
        session = self.sessions.get(session_name)
        if session is not None:
            self.delivery.remote_ack(session, message_id)

    def on_remote_drop(self, session_name: str) -> None:
        """Another node dropped a session."""
        self.admin.on_remote_drop(session_name)

    def on_remote_suspend(self, session_name: str, suspended: bool) -> None:
        """Another node suspended or resumed a session."""
        self.admin.on_remote_suspend(session_name, suspended)

    def on_handover_request(self, session_name: str, client_id: str) -> DurableState | None:
        """Another node took a durable client held here: close its connection here and hand it over."""
        session = self.sessions.get(session_name)
        subscriber = session.clients.get(client_id) if session is not None else None
        if subscriber is None or not subscriber.durable or subscriber.released:
            return None
        state = self.subscribers.export_state(subscriber)
        previous = subscriber.connection
        if previous is not None:
            previous.subscriber = None
            subscriber.connection = None
            previous.close(CloseCode.CLIENT_TAKEN_OVER, "client taken over on another node")
        self.subscribers.release(subscriber, handed_over=True)
        logger.info("session %r: durable client %r handed over to another node", session_name, client_id)
        return state

    # ----------------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        """Counts for ``GET /health``."""
        return {
            "uptimeSeconds": round(time.monotonic() - self.started_monotonic, 3),
            "sessions": len(self.sessions),
            "connections": self.connection_count,
            "inflightMessages": sum(session.live_messages for session in self.sessions),
        }

    def close(self) -> None:
        """Stop timers and pending ``init`` checks (server shutdown); no last will is published after this."""
        self._closing = True
        self.scheduler.close()
        self.handshake.close()
        self.admin.close()
