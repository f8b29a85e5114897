"""The broker: routes each client frame of each connection to its session.

Every handler is synchronous except ``init`` (the password check runs in an executor).
Each session's state is reached only through the connection's own ``session``, so a
frame can never touch another tenant. Every bad frame is answered with an error
frame (``errors.py`` says which) and the connection stays open, except invalid UTF-8
(close 1007), as RFC 6455 requires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from fastport.broker.connection import MAX_FRAMES_DURING_INIT, MAX_OPEN_FILES, Connection, ConnState, Sink
from fastport.broker.delivery import Delivery
from fastport.broker.limits import AuthThrottle, TokenBucket
from fastport.broker.scheduler import Scheduler
from fastport.broker.sessions import Session, SessionRegistry
from fastport.broker.subscriber import Subscriber
from fastport.config import BrokerLimits, SessionSettings
from fastport.engines.redis import RedisEngine
from fastport.engines.sqlite import SqliteStore
from fastport.errors import (
    AuthError,
    CloseCode,
    ErrorCode,
    FastportError,
    InvalidUtf8,
    LimitExceeded,
    ProtocolError,
    SessionError,
)
from fastport.protocol import codec
from fastport.protocol.frames import Ack, Disconnect, FileControl, Init, Publish, Subscribe, Unsubscribe
from fastport.protocol.topics import validate_filter, validate_topic

logger = logging.getLogger("fastport.broker")

#: Binary file chunk: 0x02 | fileId (36 ASCII bytes) | index (uint32 BE) | IV + ciphertext.
FILE_CHUNK_MARKER = 0x02
FILE_ID_LENGTH = 36
FILE_CHUNK_HEADER = 1 + FILE_ID_LENGTH + 4

# Enum member lookups cost an attribute search on the enum class (~70 ns each); the per-frame paths use these.
_OPEN: Final = ConnState.OPEN
_AUTHENTICATING: Final = ConnState.AUTHENTICATING
_CLOSED: Final = ConnState.CLOSED

_ALREADY_INITIALIZED = ProtocolError("Already initialized", code=ErrorCode.ALREADY_INITIALIZED)
_SESSION_INVALID = ProtocolError("Session suspended or invalid", code=ErrorCode.SESSION_INVALID)
_INTERNAL = FastportError("Internal server error", code=ErrorCode.INTERNAL)


def _not_initialized() -> ProtocolError:
    return ProtocolError("Not initialized", code=ErrorCode.NOT_INITIALIZED)


class _InitDeadline:
    """Scheduler item closing a connection that did not complete ``init`` in time (4003)."""

    __slots__ = ("broker", "conn")

    def __init__(self, broker: Broker, conn: Connection) -> None:
        self.broker = broker
        self.conn = conn

    def on_timer(self, now_ms: int) -> None:
        self.broker._init_expired(self.conn)


class _SessionExpiry:
    """Scheduler item ending a session at its wall-clock ``sessionExpiry``."""

    __slots__ = ("broker", "session")

    def __init__(self, broker: Broker, session: Session) -> None:
        self.broker = broker
        self.session = session

    def on_timer(self, now_ms: int) -> None:
        self.broker._expire_session(self.session, self)


class Broker:
    """All sessions and connections of one process.

    Args:
        loop: the running event loop (drives the scheduler and the password executor).
        limits: per-connection and per-session limits.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: BrokerLimits | None = None,
        store: SqliteStore | None = None,
        engine: RedisEngine | None = None,
    ) -> None:
        self.loop = loop
        self.store = store
        self.engine = engine
        self.limits = limits = limits or BrokerLimits()
        self.auth_throttle = AuthThrottle(
            limits.auth_failures_before_delay, limits.auth_failures_before_cutoff, limits.auth_failure_window_s
        )
        self.auth_failures = 0
        self.auth_cut_offs = 0
        self.rate_limited = 0
        self.rate_abuse_closes = 0
        self.subscription_limit_hits = 0
        self.connection_limit_hits = 0
        self.slow_consumer_closes = 0
        self.init_timeouts = 0
        self.scheduler = Scheduler(loop)
        self.sessions = SessionRegistry(engine)
        self.sessions.on_loaded = self._on_session_loaded
        self.delivery = Delivery(self.scheduler, store, engine)
        self.connection_count = 0
        self.started_monotonic = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        self._debug = logger.isEnabledFor(logging.DEBUG)
        self._handlers: dict[type, Callable[[Connection, Any], None]] = {
            Publish: self._on_publish,
            Ack: self._on_ack,
            Subscribe: self._on_subscribe,
            Unsubscribe: self._on_unsubscribe,
            Init: self._on_init,
            FileControl: self._on_file_control,
            Disconnect: self._on_disconnect,
        }
        self._closing = False

    # ----------------------------------------------------------------- connections

    def connect(self, sink: Sink, remote: str = "") -> Connection:
        """Register a new WebSocket connection; it has ``init_timeout_s`` to complete ``init``."""
        self.connection_count += 1
        conn = Connection(sink, remote)
        deadline = self.scheduler.now_ms() + round(self.limits.init_timeout_s * 1000)
        conn.init_timer = self.scheduler.call_at(deadline, _InitDeadline(self, conn))
        return conn

    def _init_expired(self, conn: Connection) -> None:
        conn.init_timer = None
        if conn.state is ConnState.OPEN or conn.state is ConnState.CLOSED:
            return
        self.init_timeouts += 1
        logger.info(
            "closing connection #%d from %s: no init within %g s", conn.id, conn.remote, self.limits.init_timeout_s
        )
        conn.sink.close(CloseCode.INIT_TIMEOUT, "init timeout")

    def _cancel_init_timer(self, conn: Connection) -> None:
        if conn.init_timer is not None:
            self.scheduler.cancel(conn.init_timer)
            conn.init_timer = None

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
        self._cancel_init_timer(conn)
        conn.queued = None
        session = conn.session
        if session is None:
            return
        session.connections.discard(conn)
        subscriber = conn.subscriber
        if subscriber is not None and subscriber.connection is conn:
            self.delivery.detach(subscriber)
        will, conn.will = conn.will, None
        if will is not None and not clean and not session.dropped and not self._closing:
            self.delivery.publish_will(session, will)

    def writable(self, conn: Connection) -> None:
        """``conn``'s transport drained below its limit: send what waited in its queue."""
        subscriber = conn.subscriber
        if conn.state is ConnState.OPEN and subscriber is not None and subscriber.connection is conn:
            self.delivery.drain(subscriber)

    def receive(self, conn: Connection, payload: bytes) -> None:
        """Handle one complete text frame from ``conn``."""
        state = conn.state
        if state is _AUTHENTICATING:
            self._queue_during_init(conn, payload)
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
            self._close(conn, CloseCode.INVALID_DATA, exc.error)
            return
        except ProtocolError as exc:
            self._reject(conn, exc)
            return
        if message_id is not None:
            self._ack(conn, message_id)
            return
        try:
            self._handlers[type(frame)](conn, frame)
        except FastportError as exc:
            self._reject(conn, exc)
        except Exception:
            logger.exception("internal error handling a frame of connection #%d", conn.id)
            conn.sink.send(codec.encode_error(_INTERNAL))

    def receive_binary(self, conn: Connection, payload: bytes) -> None:
        """Handle one binary frame: a file chunk, forwarded unchanged to the file's topic."""
        if conn.state is not ConnState.OPEN:
            if conn.state is not ConnState.CLOSED:
                self._reject(conn, _not_initialized())
            return
        if len(payload) < FILE_CHUNK_HEADER or payload[0] != FILE_CHUNK_MARKER:
            self._reject(conn, ProtocolError("invalid file chunk", code=ErrorCode.BINARY_NOT_SUPPORTED))
            return
        file_id = payload[1 : 1 + FILE_ID_LENGTH].decode("latin-1")
        topic = conn.files.get(file_id) if conn.files else None
        if topic is None:
            self._reject(conn, ProtocolError("file chunk without init_file", code=ErrorCode.NOT_SUBSCRIBED))
            return
        session = conn.session
        assert session is not None
        for target in self._others(session, topic, conn):
            target.sink.send_binary(payload)

    def _queue_during_init(self, conn: Connection, payload: bytes) -> None:
        queued = conn.queued
        if queued is None:
            queued = conn.queued = deque()
        if len(queued) >= MAX_FRAMES_DURING_INIT:
            self._reject(conn, LimitExceeded("too many frames before init was answered"))
            return
        queued.append(payload)

    def _reject(self, conn: Connection, exc: FastportError, response_type: str | None = None, **extra: Any) -> None:
        if self._debug:
            logger.debug("connection #%d: %s", conn.id, exc.error)
        conn.sink.send(codec.encode_error(exc, response_type, **extra))

    def _close(self, conn: Connection, code: int, reason: str) -> None:
        logger.info("closing connection #%d: %d %s", conn.id, code, reason)
        conn.sink.close(code, reason)

    # -------------------------------------------------------------------- handlers

    def _on_init(self, conn: Connection, frame: Init) -> None:
        if conn.state is ConnState.OPEN:
            self._reject(conn, _ALREADY_INITIALIZED, "init_response")
            return
        if frame.will is not None:
            try:
                validate_topic(frame.will.topic)
            except ProtocolError as exc:
                self._reject(
                    conn, ProtocolError(f"will: {exc.error}", code=exc.error_code, field="will.topic"), "init_response"
                )
                return
        conn.state = ConnState.AUTHENTICATING
        task = self.loop.create_task(self._authenticate(conn, frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _authenticate(self, conn: Connection, frame: Init) -> None:
        address = conn.remote.rpartition(":")[0] or conn.remote
        keys = (f"address:{address}", f"session:{frame.session_name}")
        try:
            delay_s = self.auth_throttle.delay_s(keys, self.loop.time())
            if delay_s is None:
                self.auth_cut_offs += 1
                raise AuthError("too many authentication failures, try again later", code=ErrorCode.AUTH_THROTTLED)
            if delay_s:
                await asyncio.sleep(delay_s)
            try:
                session = await self.sessions.authenticate(frame.session_name, frame.password)
            except (AuthError, SessionError) as exc:
                if exc.error_code in (ErrorCode.INVALID_PASSWORD, ErrorCode.SESSION_NOT_FOUND):
                    self.auth_failures += 1
                    self.auth_throttle.failed(keys, self.loop.time())
                raise
            self.auth_throttle.succeeded(keys[0])
            if frame.durable and self.engine is not None and frame.client_id not in session.clients:
                assert frame.client_id is not None
                state = await self.engine.fetch_durable(session.name, frame.client_id)
                if state is not None and frame.client_id not in session.clients and not session.dropped:
                    self.delivery.import_durable(session, frame.client_id, state)
        except FastportError as exc:
            if conn.state is ConnState.AUTHENTICATING:
                conn.state = ConnState.AWAIT_INIT
                logger.info("connection #%d: init refused: %s", conn.id, exc.error)
                self._reject(conn, exc, "init_response")
                if exc.error_code == ErrorCode.AUTH_THROTTLED:
                    self._close(conn, CloseCode.AUTH_CUT_OFF, "too many authentication failures")
        except Exception:
            logger.exception("init of connection #%d failed", conn.id)
            if conn.state is ConnState.AUTHENTICATING:
                conn.state = ConnState.AWAIT_INIT
                self._reject(conn, _INTERNAL, "init_response")
        else:
            if conn.state is not ConnState.AUTHENTICATING:
                return
            self._open(conn, session, frame)
        queued = conn.queued
        while queued and conn.state is not ConnState.AUTHENTICATING and conn.state is not ConnState.CLOSED:
            self.receive(conn, queued.popleft())
        if not queued:
            conn.queued = None

    def _open(self, conn: Connection, session: Session, frame: Init) -> None:
        """Bind an authenticated connection to its session and its (maybe resumed) subscriber."""
        client_id = frame.client_id
        subscriber = session.clients.get(client_id) if client_id is not None else None
        taking_over = subscriber is not None and subscriber.connection is not None
        if len(session.connections) - taking_over >= self.limits.max_connections_per_session:
            self.connection_limit_hits += 1
            conn.state = ConnState.AWAIT_INIT
            error = LimitExceeded(
                f"too many connections for this session: {self.limits.max_connections_per_session}",
                code=ErrorCode.TOO_MANY_CONNECTIONS,
            )
            self._reject(conn, error, "init_response")
            return
        self._cancel_init_timer(conn)
        conn.state = ConnState.OPEN
        conn.session = session
        conn.user_id = frame.user_id
        conn.will = frame.will
        session.connections.add(conn)
        response: dict[str, Any] = {"type": "init_response", "success": True, "sessionName": session.name}
        if subscriber is not None:
            previous = subscriber.connection
            if previous is not None:
                logger.info("session %r: client %r taken over by connection #%d", session.name, client_id, conn.id)
                previous.subscriber = None
                self.delivery.detach(subscriber)
                previous.sink.close(CloseCode.CLIENT_TAKEN_OVER, "client taken over by a new connection")
            if not (subscriber.durable and frame.durable) or subscriber.released:
                self.delivery.release_subscriber(subscriber)
                subscriber = None
        resumed = subscriber is not None
        if subscriber is None:
            subscriber = self.delivery.new_subscriber(session, client_id, frame.durable)
            if client_id is not None:
                session.clients[client_id] = subscriber
        conn.subscriber = subscriber
        if client_id is not None:
            response["resumed"] = resumed
        if resumed:
            response["subscriptions"] = sorted(subscriber.filters)
        conn.sink.send(codec.encode(response))
        if resumed:
            self.delivery.resume(subscriber, conn)
        else:
            subscriber.connection = conn
        if subscriber.durable and self.engine is not None:
            assert client_id is not None
            self.engine.claim_durable_soon(session.name, client_id)

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
            self._reject(conn, exc, "subscribe_response", topic=frame.topic)
            return
        filters = subscriber.filters
        if topic_filter not in filters and len(filters) >= limits.max_subscriptions_per_connection:
            self.subscription_limit_hits += 1
            error = LimitExceeded(
                f"too many subscriptions: {limits.max_subscriptions_per_connection}",
                code=ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            )
            self._reject(conn, error, "subscribe_response", topic=topic_filter)
            return
        session.index.add(topic_filter, subscriber, frame.qos)
        subscriber.filters[topic_filter] = frame.qos
        self.delivery.save_durable(subscriber)
        conn.sink.send(codec.encode({"type": "subscribe_response", "success": True, "topic": topic_filter}))
        if session.retained:
            self.delivery.send_retained(subscriber, topic_filter, frame.qos)

    def _on_unsubscribe(self, conn: Connection, frame: Unsubscribe) -> None:
        session, subscriber = self._subscriber_of(conn)
        if frame.topic not in subscriber.filters:
            error = ProtocolError("Not subscribed", code=ErrorCode.NOT_SUBSCRIBED, field="topic")
            self._reject(conn, error, "unsubscribe_response", topic=frame.topic)
            return
        session.index.discard(frame.topic, subscriber)
        del subscriber.filters[frame.topic]
        self.delivery.save_durable(subscriber)
        conn.sink.send(codec.encode({"type": "unsubscribe_response", "success": True, "topic": frame.topic}))

    def _on_publish(self, conn: Connection, frame: Publish) -> None:
        session = self._session_of(conn)
        if session.suspended or session.dropped:
            self._reject(conn, _SESSION_INVALID, "publish_response", messageId=frame.message_id)
            return
        if not self._within_rate(conn):
            return
        limits = self.limits
        try:
            validate_topic(frame.topic, max_length=limits.max_topic_length, max_depth=limits.max_topic_depth)
        except ProtocolError as exc:
            self._reject(conn, exc, "publish_response", messageId=frame.message_id)
            return
        self.delivery.publish(session, conn, frame)

    def _within_rate(self, conn: Connection) -> bool:
        """Spend a publish token of ``conn``; answer or close it when it has none."""
        limits = self.limits
        now_s = self.loop.time()
        bucket = conn.bucket
        if bucket is None:
            bucket = conn.bucket = TokenBucket(limits.publish_rate_per_s, limits.publish_burst, now_s)
        if bucket.take(now_s):
            return True
        self.rate_limited += 1
        if bucket.violations >= limits.publish_violations_before_close:
            self.rate_abuse_closes += 1
            self._close(conn, CloseCode.RATE_LIMIT_ABUSE, "publish rate limit exceeded repeatedly")
        else:
            error = LimitExceeded(
                f"publish rate limit exceeded: {limits.publish_rate_per_s:g}/s", code=ErrorCode.RATE_LIMITED
            )
            self._reject(conn, error, "publish_response")
        return False

    def _on_ack(self, conn: Connection, frame: Ack) -> None:
        self._session_of(conn)
        self._ack(conn, frame.message_id)

    def _ack(self, conn: Connection, message_id: str) -> None:
        """Record an ack of an OPEN connection (``receive`` calls it for acks without building a frame)."""
        try:
            self.delivery.ack(conn.subscriber, message_id)  # type: ignore[arg-type]  # OPEN: it has one
        except ProtocolError as exc:
            self._reject(conn, exc, None, messageId=message_id)

    def _on_disconnect(self, conn: Connection, frame: Disconnect) -> None:
        self._session_of(conn)
        conn.will = None
        conn.sink.close(CloseCode.NORMAL, "bye")

    def _on_file_control(self, conn: Connection, frame: FileControl) -> None:
        session = self._session_of(conn)
        validate_topic(frame.topic, max_length=self.limits.max_topic_length, max_depth=self.limits.max_topic_depth)
        files = conn.files
        if frame.kind == "init_file":
            if files is None:
                files = conn.files = {}
            if frame.file_id not in files and len(files) >= MAX_OPEN_FILES:
                raise LimitExceeded(f"too many open file transfers: {MAX_OPEN_FILES}")
            files[frame.file_id] = frame.topic
        elif files is None or files.pop(frame.file_id, None) is None:
            raise ProtocolError("end_file without init_file", code=ErrorCode.NOT_SUBSCRIBED, field="fileId")
        for target in self._others(session, frame.topic, conn):
            target.sink.send(frame.raw)

    @staticmethod
    def _others(session: Session, topic: str, conn: Connection) -> list[Connection]:
        """The open connections, other than ``conn``, subscribed to ``topic``."""
        targets = []
        for subscriber in session.index.match(topic):
            target = subscriber.connection
            if target is not None and target is not conn and target.sink.is_open:
                targets.append(target)
        return targets

    # -------------------------------------------------------------------- sessions

    async def create_session(self, name: str, password: str, settings: SessionSettings) -> tuple[Session, str]:
        """Create a session; returns it and its secret key (see ``SessionRegistry.create``)."""
        session, secret_key = await self.sessions.create(name, password, settings)
        if settings.expires_at_ms is not None:
            self.arm_session_expiry(session)
        if self.store is not None:
            self.save_session(session)
            committed = self.loop.create_future()

            def resolve() -> None:
                if not committed.done():
                    committed.set_result(None)

            self.store.after_commit(resolve)
            await committed
        logger.info("session %r created", name)
        return session, secret_key

    def save_session(self, session: Session) -> None:
        """Write a session (credentials, settings, suspension) to the store."""
        assert self.store is not None
        password = session.password_hash
        self.store.put_session(
            session.name,
            password.salt,
            password.digest,
            session.secret_digest,
            session.settings.to_store(),
            session.suspended,
        )

    def arm_session_expiry(self, session: Session) -> None:
        """End ``session`` at its ``sessionExpiry``."""
        self._arm_expiry(session, _SessionExpiry(self, session))

    def _arm_expiry(self, session: Session, item: _SessionExpiry) -> None:
        assert session.settings.expires_at_ms is not None
        remaining_ms = session.settings.expires_at_ms - int(time.time() * 1000)
        session.expiry_handle = self.scheduler.call_at(self.scheduler.now_ms() + max(remaining_ms, 0), item)

    def _expire_session(self, session: Session, item: _SessionExpiry) -> None:
        expires_at = session.settings.expires_at_ms
        if session.dropped or expires_at is None:
            return
        if int(time.time() * 1000) < expires_at:
            self._arm_expiry(session, item)  # beyond the wheel's horizon, or the wall clock moved
            return
        logger.info("session %r expired", session.name)
        self._drop(session, CloseCode.SESSION_EXPIRED, "session expired")
        if self.engine is not None:
            task = self.loop.create_task(self.engine.drop_session(session.name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drop_session(self, name: str, password: str, secret_key: str) -> None:
        """Drop a session: close its sockets (close code 4001) and forget all of its state."""
        session = await self.sessions.authorize_owner(name, password, secret_key)
        self._drop(session, CloseCode.SESSION_DROPPED, "session dropped")
        if self.engine is not None:
            await self.engine.drop_session(name)
        logger.info("session %r dropped", name)

    async def suspend_session(self, name: str, password: str, secret_key: str, suspend: bool) -> None:
        """Suspend (no new ``init``, no publish) or resume a session; connected sockets stay."""
        session = await self.sessions.authorize_owner(name, password, secret_key)
        session.suspended = suspend
        if self.store is not None:
            self.store.set_suspended(name, suspend)
        if self.engine is not None:
            await self.engine.set_suspended(name, suspend)
        logger.info("session %r %s", name, "suspended" if suspend else "resumed")

    def _drop(self, session: Session, code: int, reason: str) -> None:
        self.sessions.remove(session)
        if self.store is not None:
            self.store.delete_session(session.name)
        if session.expiry_handle is not None:
            self.scheduler.cancel(session.expiry_handle)
        for conn in list(session.connections):
            self.disconnect(conn)
            conn.sink.close(code, reason)
        session.connections.clear()
        self.delivery.forget_session(session)

    # -------------------------------------------------------------- other nodes

    def _on_session_loaded(self, session: Session) -> None:
        if session.settings.expires_at_ms is not None:
            self.arm_session_expiry(session)

    def on_remote_publish(self, session_name: str, fields: dict[str, Any], origin: str) -> None:
        """Fan a publish accepted by another node out to this node's subscribers."""
        session = self.sessions.get(session_name)
        if session is None:
            return  # no client of that session ever came here: nobody to deliver to
        publish = Publish(
            topic=fields["t"],
            data=fields["d"],
            message_id=fields["id"],
            hash=fields.get("h"),
            timestamp=fields.get("ts"),
            qos=int(fields.get("q", 1)),
            retain=bool(fields.get("r")),
        )
        self.delivery.publish(session, None, publish, origin=origin)

    def on_remote_ack(self, session_name: str, message_id: str) -> None:
        """A subscriber on another node acked a message published here."""
        session = self.sessions.get(session_name)
        if session is not None:
            self.delivery.remote_ack(session, message_id)

    def on_handover_request(self, session_name: str, client_id: str) -> dict[str, Any] | None:
        """Another node took a durable client held here: close its connection here and hand it over."""
        session = self.sessions.get(session_name)
        subscriber = session.clients.get(client_id) if session is not None else None
        if subscriber is None or not subscriber.durable or subscriber.released:
            return None
        state = self.delivery.export_durable(subscriber)
        previous = subscriber.connection
        if previous is not None:
            previous.subscriber = None
            subscriber.connection = None
            previous.sink.close(CloseCode.CLIENT_TAKEN_OVER, "client taken over on another node")
        self.delivery.release_subscriber(subscriber, handed_over=True)
        logger.info("session %r: durable client %r handed over to another node", session_name, client_id)
        return state

    def on_session_event(self, kind: str, session_name: str, value: bool) -> None:
        """Another node dropped or (un)suspended a session."""
        session = self.sessions.get(session_name)
        if session is None:
            return
        if kind == "drop":
            self._drop(session, CloseCode.SESSION_DROPPED, "session dropped")
        elif kind == "suspend":
            session.suspended = value

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
        for task in list(self._tasks):
            task.cancel()
