"""The handshake: from a new WebSocket to an open connection bound to its session.

A connection has ``init_timeout_s`` from the upgrade to a successful ``init`` (later: close
4003). ``init`` checks the session's password off the event loop, behind the authentication
throttle (per client address and session name pair, and per session name: a delay after a few
failures, refusal and close 4006 after many; per client address alone: refusal after many more).
Frames that arrive while the check runs are queued (bounded) and handled in order once ``init``
is answered. A ``clientId`` already connected is taken over (the old connection is closed with
4004); a durable client resumes what it held, fetched first from another node if it lived there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastport.broker.connection import MAX_FRAMES_DURING_INIT, ConnState
from fastport.broker.limits import AuthThrottle
from fastport.errors import (
    AuthError,
    CloseCode,
    ErrorCode,
    FastportError,
    LimitExceeded,
    ProtocolError,
    SessionError,
)
from fastport.protocol import codec
from fastport.protocol.topics import validate_topic

if TYPE_CHECKING:
    from fastport.broker.cluster import ClusterLink
    from fastport.broker.connection import Connection
    from fastport.broker.durable import Subscribers
    from fastport.broker.scheduler import Scheduler
    from fastport.broker.sessions import Session, SessionRegistry
    from fastport.broker.stats import BrokerCounters
    from fastport.config import BrokerLimits
    from fastport.protocol.frames import Init

logger = logging.getLogger("fastport.broker")

_ALREADY_INITIALIZED = ProtocolError("Already initialized", code=ErrorCode.ALREADY_INITIALIZED)
_INTERNAL = FastportError("Internal server error", code=ErrorCode.INTERNAL)


class Handshake:
    """Runs the init deadline, the ``init`` check and the binding of a connection to its session.

    Args:
        loop: the running event loop (password checks, throttle delays).
        scheduler: the broker's timers (init deadlines).
        limits: the broker's limits (init timeout, throttle, connections per session).
        sessions: the session registry.
        subscribers: subscriber lifecycle (new, resumed, taken over).
        cluster: the link to other nodes (durable clients living elsewhere).
        counters: what is counted for ``/metrics``.
        replay: handles one queued frame of a connection once ``init`` is answered.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        scheduler: Scheduler,
        limits: BrokerLimits,
        sessions: SessionRegistry,
        subscribers: Subscribers,
        cluster: ClusterLink,
        counters: BrokerCounters,
        replay: Callable[[Connection, bytes], None],
    ) -> None:
        self._loop = loop
        self._scheduler = scheduler
        self._limits = limits
        self._sessions = sessions
        self._subscribers = subscribers
        self._cluster = cluster
        self._counters = counters
        self._replay = replay
        self._throttle = AuthThrottle(
            limits.auth_failures_before_delay,
            limits.auth_failures_before_cutoff,
            limits.auth_failure_window_s,
            limits.auth_address_failures_before_cutoff,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- deadline

    def start(self, conn: Connection) -> None:
        """A new connection: close it (4003) unless an ``init`` succeeds within the init timeout."""
        deadline = self._scheduler.now_ms() + round(self._limits.init_timeout_s * 1000)
        conn.init_timer = self._scheduler.call_at(deadline, self._init_expired, conn)

    def _init_expired(self, conn: Connection, now_ms: int) -> None:
        conn.init_timer = None
        if conn.state is ConnState.OPEN or conn.state is ConnState.CLOSED:
            return
        self._counters.init_timeouts += 1
        logger.info(
            "closing connection #%d from %s: no init within %g s",
            conn.id,
            conn.remote,
            self._limits.init_timeout_s,
            extra=conn.log_context(),
        )
        conn.sink.close(CloseCode.INIT_TIMEOUT, "init timeout")

    def stop(self, conn: Connection) -> None:
        """The connection is open or gone: its init deadline no longer applies."""
        if conn.init_timer is not None:
            self._scheduler.cancel(conn.init_timer)
            conn.init_timer = None

    # --------------------------------------------------------------------- init

    def queue(self, conn: Connection, payload: bytes) -> None:
        """Hold a frame that arrived while ``conn``'s ``init`` is being checked (bounded)."""
        queued = conn.queued
        if queued is None:
            queued = conn.queued = deque()
        if len(queued) >= MAX_FRAMES_DURING_INIT:
            conn.reject(LimitExceeded("too many frames before init was answered"))
            return
        queued.append(payload)

    def on_init(self, conn: Connection, frame: Init) -> None:
        """Check an ``init`` in the background; frames arriving meanwhile are queued."""
        if conn.state is ConnState.OPEN:
            conn.reject(_ALREADY_INITIALIZED, "init_response")
            return
        if frame.will is not None:
            try:
                validate_topic(frame.will.topic)
            except ProtocolError as exc:
                error = ProtocolError(f"will: {exc.error}", code=exc.error_code, field="will.topic")
                conn.reject(error, "init_response")
                return
        conn.state = ConnState.AUTHENTICATING
        task = self._loop.create_task(self._authenticate(conn, frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _authenticate(self, conn: Connection, frame: Init) -> None:
        address = conn.remote.rpartition(":")[0] or conn.remote
        name = frame.session_name
        try:
            delay_s = self._throttle.delay_s(address, name, self._loop.time())
            if delay_s is None:
                self._counters.auth_cut_offs += 1
                raise AuthError(
                    "too many authentication failures, try again later",
                    code=ErrorCode.AUTH_THROTTLED,
                    close=CloseCode.AUTH_CUT_OFF,
                )
            if delay_s:
                await asyncio.sleep(delay_s)
            try:
                session = await self._sessions.authenticate(frame.session_name, frame.password)
            except (AuthError, SessionError) as exc:
                if exc.error_code in (ErrorCode.INVALID_PASSWORD, ErrorCode.SESSION_NOT_FOUND):
                    self._counters.auth_failures += 1
                    self._throttle.failed(address, name, self._loop.time())
                raise
            self._throttle.succeeded(address, name)
            client_id = frame.client_id
            if frame.durable and client_id is not None and client_id not in session.clients:
                state = await self._cluster.fetch_durable(session.name, client_id)
                if state is not None and client_id not in session.clients and not session.dropped:
                    self._subscribers.import_state(session, client_id, state)
        except FastportError as exc:
            if conn.state is ConnState.AUTHENTICATING:
                conn.state = ConnState.AWAIT_INIT
                logger.info(
                    "connection #%d: init of session %r refused: %s", conn.id, name, exc.error, extra=conn.log_context()
                )
                conn.reject(exc, "init_response")
                if exc.close_code is not None:
                    conn.close_for(exc)
        except Exception:
            logger.exception("init of connection #%d failed", conn.id, extra=conn.log_context())
            if conn.state is ConnState.AUTHENTICATING:
                conn.state = ConnState.AWAIT_INIT
                conn.reject(_INTERNAL, "init_response")
        else:
            if conn.state is not ConnState.AUTHENTICATING:
                return
            self._open(conn, session, frame)
        queued = conn.queued
        while queued and conn.state is not ConnState.AUTHENTICATING and conn.state is not ConnState.CLOSED:
            self._replay(conn, queued.popleft())
        if not queued:
            conn.queued = None

    def _open(self, conn: Connection, session: Session, frame: Init) -> None:
        """Bind an authenticated connection to its session and its (maybe resumed) subscriber."""
        client_id = frame.client_id
        subscriber = session.clients.get(client_id) if client_id is not None else None
        taking_over = subscriber is not None and subscriber.connection is not None
        limit = self._limits.max_connections_per_session
        if len(session.connections) - taking_over >= limit:
            self._counters.connection_limit_hits += 1
            conn.state = ConnState.AWAIT_INIT
            error = LimitExceeded(
                f"too many connections for this session: {limit}", code=ErrorCode.TOO_MANY_CONNECTIONS
            )
            conn.reject(error, "init_response")
            return
        self.stop(conn)
        conn.state = ConnState.OPEN
        conn.session = session
        conn.user_id = frame.user_id
        conn.will = frame.will
        session.connections.add(conn)
        response: dict[str, Any] = {"type": "init_response", "success": True, "sessionName": session.name}
        subscribers = self._subscribers
        if subscriber is not None:
            previous = subscriber.connection
            if previous is not None:
                logger.info(
                    "session %r: client %r of connection #%d taken over by connection #%d",
                    session.name,
                    client_id,
                    previous.id,
                    conn.id,
                    extra=conn.log_context(),
                )
                previous.subscriber = None
                subscribers.detach(subscriber)
                previous.close(CloseCode.CLIENT_TAKEN_OVER, "client taken over by a new connection")
            if not (subscriber.durable and frame.durable) or subscriber.released:
                subscribers.release(subscriber)
                subscriber = None
        resumed = subscriber is not None
        if subscriber is None:
            subscriber = subscribers.new(session, client_id, frame.durable)
            if client_id is not None:
                session.clients[client_id] = subscriber
        conn.subscriber = subscriber
        if client_id is not None:
            response["resumed"] = resumed
        if resumed:
            response["subscriptions"] = sorted(subscriber.filters)
        conn.sink.send(codec.encode(response))
        if resumed:
            subscribers.resume(subscriber, conn)
        else:
            subscriber.connection = conn
        if subscriber.durable:
            assert client_id is not None
            self._cluster.claim_durable(session.name, client_id)

    def close(self) -> None:
        """Stop every pending ``init`` check (server shutdown)."""
        for task in list(self._tasks):
            task.cancel()
