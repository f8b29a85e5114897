"""The asyncio fastport client: publish and subscribe over one WebSocket, with end-to-end envelopes.

Lifetimes and rules (``docs/protocol.md`` §3 for the frames):

* One connection at a time. When it is lost the client reconnects with backoff
  (``ReconnectPolicy``), sends ``init`` again, resubscribes every topic filter and re-sends
  every unconfirmed publish with the **same** messageId, so the broker can drop duplicates.
* A publish stays *unconfirmed* until the broker answered ``publish_response`` and, for
  QoS 1 with at least one receiver, a subscriber acked it (``ack_received``). Unconfirmed
  publishes are re-sent every ``retry_interval_s``, at most ``max_retries`` times.
* A received message is acked only after its envelope opened (hash and, for v2, GCM tag
  checked) and it was handed to the application (a ``get`` callback called, or queued to a
  ``subscribe`` iterator). One that fails is neither acked nor delivered, so the broker
  redelivers it. Redeliveries of an already handed-over messageId are acked again but not
  delivered twice.
* A verified message that no route matches yet (a durable client's held messages arrive right
  after ``init``, before the application's ``get``) is kept, unacked, for ``UNROUTED_GRACE_S``
  (at most ``UNROUTED_CAPACITY``) and handed over as soon as a matching route is registered;
  one nobody claims is dropped unacked, so the broker keeps it and redelivers it.
* ``init`` refused, or the broker closing with 4001 (session dropped) or 4002 (session
  expired), stops the client for good: every waiter gets the exception.

Nothing here logs payloads, passwords or keys.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Final, Literal, Self, cast

import orjson
from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from fastport.client.backoff import ReconnectPolicy
from fastport.client.crypto import EnvelopeCipher, EnvelopeVersion
from fastport.client.errors import (
    AckTimeout,
    ConnectionClosed,
    EnvelopeError,
    InitRefused,
    PublishRefused,
    RequestRefused,
    SessionEnded,
    wire_code,
)
from fastport.client.seen_ids import DEFAULT_CAPACITY, SeenIds
from fastport.client.values import ClientStats, ConnectionState, Message, PublishResult
from fastport.errors import CloseCode, ConfigError
from fastport.protocol.topics import filter_matches, validate_filter, validate_topic

logger = logging.getLogger("fastport.client")

MessageCallback = Callable[[str | bytes, int | float], Awaitable[None] | None]
"""``callback(payload, timestamp_ms)`` given to ``Client.get``; sync or async."""
StateCallback = Callable[[ConnectionState], Awaitable[None] | None]
"""``on_state(state)``; sync or async."""

#: Close codes after which reconnecting cannot succeed.
FINAL_CLOSE_CODES: Final = frozenset({CloseCode.SESSION_DROPPED, CloseCode.SESSION_EXPIRED})
#: At most one "rejected message" warning per this many seconds (the rest are counted).
REJECT_WARNING_INTERVAL_S: Final = 1.0
DISCONNECT_TIMEOUT_S: Final = 2.0
#: How long a verified message that no route matches yet is kept for one (unacked) before it is dropped.
UNROUTED_GRACE_S: Final = 2.0
#: Messages kept for a route at most (the oldest is dropped, unacked, beyond).
UNROUTED_CAPACITY: Final = 10_000
DEFAULT_MAX_FRAME_SIZE: Final = 64 << 20

_TEXT: Final = WSMsgType.TEXT
_CONTINUATION: Final = WSMsgType.CONTINUATION
_CLOSE: Final = WSMsgType.CLOSE


class _Listener(WSListener):
    """One WebSocket connection: hands complete text frames to the client, records the close code."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client
        self._fragments: list[bytes] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.disconnected = asyncio.Event()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # A WSFrame lives only during this call: copy its payload here.
        msg_type = frame.msg_type
        if msg_type is _TEXT and frame.fin and self._fragments is None:
            self._client._on_text(self, frame.get_payload_as_bytes())
        elif msg_type is _CLOSE:
            code = frame.get_close_code()
            self.close_code = code.value if isinstance(code, WSCloseCode) else int(code)
            self.close_reason = frame.get_close_message().decode("utf-8", "replace")
            if not transport.is_close_frame_sent:
                transport.send_close(code, frame.get_close_message())
            transport.disconnect()
        elif msg_type is _TEXT or (msg_type is _CONTINUATION and self._fragments is not None):
            fragments = self._fragments if self._fragments is not None else []
            fragments.append(frame.get_payload_as_bytes())
            self._fragments = None if frame.fin else fragments
            if frame.fin:
                self._client._on_text(self, b"".join(fragments))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected.set()
        self._client._on_disconnected(self)


class _Outgoing:
    """An unconfirmed publish: its frame (re-sent verbatim) and the futures ``emit`` waits on."""

    __slots__ = ("message_id", "frame", "qos", "response", "ack", "answered", "acked", "retries", "timer")

    def __init__(
        self,
        message_id: str,
        frame: bytes,
        qos: int,
        response: asyncio.Future[PublishResult],
        ack: asyncio.Future[None] | None,
    ) -> None:
        self.message_id = message_id
        self.frame = frame
        self.qos = qos
        self.response = response
        self.ack = ack
        self.answered = False
        self.acked = False
        self.retries = 0
        self.timer: asyncio.TimerHandle | None = None


class _Route:
    """One topic filter of this client and everything that consumes its messages."""

    __slots__ = ("topic", "qos", "callbacks", "subscriptions", "ready")

    def __init__(self, topic: str, qos: int, ready: asyncio.Future[None]) -> None:
        self.topic = topic
        self.qos = qos
        self.callbacks: list[MessageCallback] = []
        self.subscriptions: list[Subscription] = []
        self.ready = ready  # resolved by the first subscribe_response for this filter


class Subscription:
    """An async iterator over the messages of one topic filter (``Client.subscribe``).

    Messages are queued from the moment ``subscribe`` returns, so none is missed before
    iteration starts. Iteration ends when the topic is unsubscribed or the client closed, and
    raises the client's error when it stopped on one (or ``RequestRefused`` when the broker
    refused the subscription).
    """

    def __init__(self, client: Client, route: _Route) -> None:
        self._client = client
        self._route = route
        self._queue: asyncio.Queue[Message | BaseException | None] = asyncio.Queue()
        self._finished = False

    @property
    def topic(self) -> str:
        """The topic filter this subscription follows."""
        return self._route.topic

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._finished:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, Message):
            return item
        self._finished = True
        if item is None:
            raise StopAsyncIteration
        raise item

    async def ready(self) -> None:
        """Wait until the broker confirmed the subscription.

        Raises:
            RequestRefused: the broker refused it.
            ConnectionClosed: the client closed (or the topic was unsubscribed) first.
            TimeoutError: no answer within the client's ``request_timeout_s`` while connected.
        """
        await self._client._wait_ready(self._route)

    def close(self) -> None:
        """Stop this iterator; the topic stays subscribed (see ``Client.unsubscribe``)."""
        if self in self._route.subscriptions:
            self._route.subscriptions.remove(self)
        self._end(None)

    def _put(self, message: Message) -> None:
        self._queue.put_nowait(message)

    def _end(self, error: BaseException | None) -> None:
        if not self._finished:
            self._queue.put_nowait(error)


class Client:
    """An asyncio fastport client: publish, subscribe and receive end-to-end encrypted messages.

    Use ``async with Client(...) as client:`` or ``await client.init()`` then ``await client.close()``.

    Args:
        url: the broker, ``ws://host:port`` or ``wss://host:port``.
        session_name: the session (tenant) to join.
        password: the session's password.
        key: the session's shared AES-256 key, base64 of 32 bytes.
        client_id: a stable id for this client (sent as ``clientId``), needed for ``durable``.
        durable: ask the broker to keep this client's subscriptions and unacked messages
            while it is disconnected.
        envelope: the envelope the client sends, ``"v2"`` (AES-GCM, default) or ``"v1"``
            (AES-CBC, for the original clients); both are always accepted.
        retry_interval_s: how long a publish waits for its answer (or ack) before a re-send.
        max_retries: re-sends of one publish before ``emit`` raises ``AckTimeout``.
        reconnect: the reconnect backoff; ``ReconnectPolicy(max_attempts=0)`` never reconnects.
        request_timeout_s: how long ``init``, subscribe and unsubscribe wait for their answer.
        ping_interval_s: ping the broker after this long without traffic and drop the connection
            if no pong comes within as long again; None disables it.
        ssl_context: TLS settings for ``wss://``; the default context when None.
        on_state: called with each new ``ConnectionState``.
        dedup_capacity: how many received messageIds are remembered to drop redeliveries.
        max_frame_size: the largest frame accepted from the broker, in bytes.

    Raises:
        ConfigError: an unusable argument (also a ValueError); the key is never echoed.
    """

    def __init__(
        self,
        url: str,
        session_name: str,
        password: str,
        key: str | bytes,
        *,
        client_id: str | None = None,
        durable: bool = False,
        envelope: EnvelopeVersion = "v2",
        retry_interval_s: float = 5.0,
        max_retries: int = 5,
        reconnect: ReconnectPolicy | None = None,
        request_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        ssl_context: ssl.SSLContext | None = None,
        on_state: StateCallback | None = None,
        dedup_capacity: int = DEFAULT_CAPACITY,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError("url must start with ws:// or wss://")
        if envelope not in ("v1", "v2"):
            raise ConfigError("envelope must be 'v1' or 'v2'")
        if durable and not client_id:
            raise ConfigError("durable needs a client_id")
        if retry_interval_s <= 0 or max_retries < 0 or request_timeout_s <= 0:
            raise ConfigError("need retry_interval_s > 0, max_retries >= 0 and request_timeout_s > 0")
        try:
            self._cipher = EnvelopeCipher(key, session_name)
        except EnvelopeError as exc:
            raise ConfigError(f"unusable key: {exc.error}") from None
        self.url = url
        self.session_name = session_name
        self._password = password
        self.client_id = client_id
        self.durable = durable
        self.envelope: EnvelopeVersion = envelope
        self.retry_interval_s = retry_interval_s
        self.max_retries = max_retries
        self.reconnect = reconnect if reconnect is not None else ReconnectPolicy()
        self.request_timeout_s = request_timeout_s
        self.ping_interval_s = ping_interval_s
        self._ssl_context = ssl_context
        self._on_state = on_state
        self._max_frame_size = max_frame_size
        self.stats = ClientStats()
        self.resumed = False
        self._state = ConnectionState.CLOSED
        self._seen = SeenIds(dedup_capacity)
        self._routes: dict[str, _Route] = {}
        #: messageId -> (message, ack it when handed over, loop time it arrived), oldest first.
        self._unrouted: dict[str, tuple[Message, bool, float]] = {}
        self._unrouted_timer: asyncio.TimerHandle | None = None
        self._outgoing: dict[str, _Outgoing] = {}
        self._unsubscribing: dict[str, deque[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transport: WSTransport | None = None
        self._listener: _Listener | None = None
        self._init_waiter: asyncio.Future[dict[str, Any]] | None = None
        self._open = False
        self._started = False
        self._closing = False
        self._error: BaseException | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._reject_warned_at = 0.0
        self._rejects_unwarned = 0
        self._debug = logger.isEnabledFor(logging.DEBUG)

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, session_name={self.session_name!r}, state={self._state.value!r})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._state

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the client, if one did."""
        return self._error

    async def init(self) -> None:
        """Connect, send ``init`` and start the reconnect supervisor.

        A failed attempt (refused, lost during the handshake, no answer) is retried with the
        reconnect policy's backoff for up to ``request_timeout_s`` (and at most its
        ``max_attempts``); then its error is raised.

        Raises:
            InitRefused: bad password, unknown or suspended session (the client is closed).
            OSError, picows.WSError, TimeoutError, ConnectionClosed: no attempt succeeded in time
                (the client is closed).
        """
        if self._started:
            raise RuntimeError("init() was already called")
        self._started = True
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._set_state(ConnectionState.CONNECTING)
        try:
            listener = await self._first_connection()
        except BaseException as exc:
            self._finish(exc if isinstance(exc, Exception) else ConnectionClosed("init cancelled"))
            raise
        self._supervisor = loop.create_task(self._supervise(listener))

    async def _first_connection(self) -> _Listener:
        """``_connect`` for ``init``, retried with the reconnect backoff while ``request_timeout_s`` lasts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_s
        attempt = 0
        while True:
            try:
                return await self._connect()
            except (OSError, WSError, TimeoutError, ConnectionClosed) as exc:
                attempt += 1
                delay = self.reconnect.delay_s(attempt)
                if self.reconnect.gives_up_after(attempt) or loop.time() + delay >= deadline:
                    raise
                logger.info("connection attempt %d failed (%s); retrying in %.2f s", attempt, type(exc).__name__, delay)
            await asyncio.sleep(delay)

    async def __aenter__(self) -> Self:
        await self.init()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and stop reconnecting; subscriptions end, waiting emits fail.

        Pending ``emit`` calls raise ``ConnectionClosed``. Safe to call more than once.
        """
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
        transport = self._transport
        self._finish(None)
        if transport is not None and not transport.is_disconnected:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            try:
                await asyncio.wait_for(transport.wait_disconnected(), DISCONNECT_TIMEOUT_S)
            except TimeoutError:
                transport.disconnect(graceful=False)
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the client is closed.

        Raises:
            SessionEnded, InitRefused, ConnectionClosed: the error that stopped the client,
                if it did not stop through ``close()``.
        """
        if self._closed is None:
            raise RuntimeError("init() was not called")
        await asyncio.shield(self._closed)

    # ----------------------------------------------------------------- publishing

    async def emit(
        self,
        topic: str,
        message: str | bytes,
        *,
        qos: Literal[0, 1] = 1,
        retain: bool = False,
        wait_ack: bool = False,
    ) -> PublishResult:
        """Encrypt ``message`` and publish it on ``topic``.

        Returns once the broker answered ``publish_response``; with ``wait_ack`` and at least one
        receiver, once a subscriber also acked it. Until confirmed, the publish is re-sent with the
        same messageId after ``retry_interval_s`` and after every reconnect. While disconnected it
        waits for the next connection.

        Args:
            topic: the topic (no wildcards).
            message: text or bytes.
            qos: 1 (default) for at-least-once delivery, 0 for at-most-once (no acks).
            retain: ask the broker to keep it as the topic's retained message.
            wait_ack: also wait for ``ack_received``.

        Returns:
            The broker's answer; ``acked`` tells whether a subscriber acknowledged it.

        Raises:
            InvalidTopic: a bad topic (also a ValueError).
            PublishRefused: ``publish_response`` with ``success: false``.
            AckTimeout: no answer (or ack) after ``max_retries`` re-sends.
            ConnectionClosed: the client closed, or stopped on an error (then that error).
        """
        self._check_usable()
        validate_topic(topic)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        message_id = str(uuid.uuid4())
        sealed = self._cipher.seal(message, version=self.envelope, topic=topic, message_id=message_id)
        body: dict[str, Any] = {
            "type": "publish",
            "topic": topic,
            "data": sealed.data,
            "hash": sealed.hash,
            "timestamp": int(time.time() * 1000),
            "messageId": message_id,
        }
        if qos == 0:
            body["qos"] = 0
        if retain:
            body["retain"] = True
        loop = asyncio.get_running_loop()
        ack = loop.create_future() if wait_ack and qos == 1 else None
        out = _Outgoing(message_id, orjson.dumps(body), qos, loop.create_future(), ack)
        self._outgoing[message_id] = out
        self._send_publish(out)
        result = await out.response
        if ack is not None and result.delivered_to > 0 and not result.acked:
            await ack
            result = replace(result, acked=True)
        return result

    def _send_publish(self, out: _Outgoing) -> None:
        if self._send(out.frame):
            self.stats.published += 1
        self._arm(out)

    def _arm(self, out: _Outgoing) -> None:
        if out.timer is not None:
            out.timer.cancel()
        out.timer = asyncio.get_running_loop().call_later(self.retry_interval_s, self._on_publish_timer, out)

    def _on_publish_timer(self, out: _Outgoing) -> None:
        out.timer = None
        if self._outgoing.get(out.message_id) is not out or not self._open:
            return  # confirmed, or disconnected: the reconnect re-sends it
        if out.retries >= self.max_retries:
            what = "ack_received" if out.answered else "publish_response"
            logger.warning("publish %s: no %s after %d re-sends; giving up", out.message_id, what, out.retries)
            self._complete(out, AckTimeout(f"no {what} for message {out.message_id} after {out.retries} re-sends"))
            return
        out.retries += 1
        self.stats.republished += 1
        self._send_publish(out)

    def _complete(self, out: _Outgoing, error: BaseException | None = None) -> None:
        """Stop tracking ``out``; fail whichever future ``emit`` is (or will be) waiting on."""
        if self._outgoing.get(out.message_id) is out:
            del self._outgoing[out.message_id]
        if out.timer is not None:
            out.timer.cancel()
            out.timer = None
        if error is None:
            if out.ack is not None and not out.ack.done():
                out.ack.set_result(None)
            return
        if not out.response.done():
            out.response.set_exception(error)
            if out.ack is not None:
                out.ack.cancel()  # emit raises at the response and never awaits the ack
        elif out.ack is not None and not out.ack.done():
            out.ack.set_exception(error)

    # ---------------------------------------------------------------- subscribing

    async def get(self, topic: str, callback: MessageCallback, *, qos: Literal[0, 1] = 1) -> None:
        """Call ``callback(payload, timestamp_ms)`` for every message on ``topic`` (a filter).

        ``callback`` may be a plain function or a coroutine function; an exception it raises is
        logged and does not stop delivery. Returns once the broker confirmed the subscription.

        Args:
            topic: a topic filter (``+`` and ``#`` wildcards allowed).
            callback: receives the plaintext (``str`` or ``bytes``) and the publisher's timestamp.
            qos: the QoS asked for (sent only when 0).

        Raises:
            InvalidTopic: a bad filter.
            RequestRefused: the broker refused the subscription.
            TimeoutError: no answer within ``request_timeout_s`` while connected.
        """
        route = self._route(topic, qos)
        route.callbacks.append(callback)
        self._route_held()
        await self._wait_ready(route)

    def subscribe(self, topic: str, *, qos: Literal[0, 1] = 1) -> Subscription:
        """Subscribe to ``topic`` (a filter) and return an async iterator over its messages.

        Use ``async for message in client.subscribe("sensors/#"): ...``. A refusal by the broker
        is raised (``RequestRefused``) by the iteration.

        Raises:
            InvalidTopic: a bad filter.
        """
        route = self._route(topic, qos)
        subscription = Subscription(self, route)
        route.subscriptions.append(subscription)
        self._route_held()
        return subscription

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``: its callbacks are dropped and its iterators end.

        Raises:
            RequestRefused: the broker refused (it did not know the subscription).
            TimeoutError: no answer within ``request_timeout_s``.
        """
        route = self._routes.pop(topic, None)
        if route is not None:
            self._end_route(route, None)
        if not self._open:
            return  # the next connection simply does not resubscribe it
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unsubscribing.setdefault(topic, deque()).append(waiter)
        self._send(orjson.dumps({"type": "unsubscribe", "topic": topic}))
        await asyncio.wait_for(waiter, self.request_timeout_s)

    def _route(self, topic: str, qos: int) -> _Route:
        self._check_usable()
        validate_filter(topic)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        route = self._routes.get(topic)
        if route is None:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            # Mark a refusal as retrieved even when no iterator ever awaits it.
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            route = self._routes[topic] = _Route(topic, qos, ready)
            self._send_subscribe(route)
        return route

    def _send_subscribe(self, route: _Route) -> None:
        body: dict[str, Any] = {"type": "subscribe", "topic": route.topic}
        if route.qos != 1:
            body["qos"] = route.qos
        self._send(orjson.dumps(body))

    async def _wait_ready(self, route: _Route) -> None:
        if route.ready.done():
            return route.ready.result()
        if self._open:
            await asyncio.wait_for(asyncio.shield(route.ready), self.request_timeout_s)
        else:
            await asyncio.shield(route.ready)

    def _end_route(self, route: _Route, error: BaseException | None) -> None:
        if not route.ready.done():
            route.ready.set_exception(error or ConnectionClosed("subscription ended"))
        for subscription in route.subscriptions:
            subscription._end(error)
        route.subscriptions.clear()
        route.callbacks.clear()

    # --------------------------------------------------------------- connections

    async def _connect(self) -> _Listener:
        """Open a connection, ``init`` it, resubscribe and re-send; return its listener."""
        transport, ws_listener = await ws_connect(
            lambda: _Listener(self),
            self.url,
            ssl_context=self._ssl_context,
            websocket_handshake_timeout=self.request_timeout_s,
            enable_auto_ping=self.ping_interval_s is not None,
            auto_ping_idle_timeout=self.ping_interval_s or 20.0,
            auto_ping_reply_timeout=self.ping_interval_s or 20.0,
            max_frame_size=self._max_frame_size,
            logger_name="fastport.client",
        )
        listener = cast("_Listener | None", ws_listener)
        if listener is None or listener.disconnected.is_set() or transport.is_disconnected:
            # Lost while the WebSocket handshake completed: picows hands back a dead transport (and no
            # listener, or one whose disconnect came before it was the client's). Fail now, not at the
            # init timeout; the caller retries with the reconnect backoff.
            transport.disconnect(graceful=False)
            raise ConnectionClosed("connection lost during the WebSocket handshake")
        self._transport, self._listener = transport, listener
        body: dict[str, Any] = {"type": "init", "sessionName": self.session_name, "password": self._password}
        if self.client_id is not None:
            body["clientId"] = self.client_id
        if self.durable:
            body["durable"] = True
        waiter = self._init_waiter = asyncio.get_running_loop().create_future()
        try:
            transport.send(_TEXT, orjson.dumps(body))
            response = await asyncio.wait_for(waiter, self.request_timeout_s)
        except BaseException:
            transport.disconnect(graceful=False)
            raise
        finally:
            self._init_waiter = None
        self.resumed = response.get("resumed") is True
        self._open = True
        logger.info("connected to session %r%s", self.session_name, " (resumed)" if self.resumed else "")
        # Same tick as _open: every emit and subscribe from now on goes straight out.
        for route in self._routes.values():
            self._send_subscribe(route)
        for out in list(self._outgoing.values()):
            self.stats.republished += 1
            self._send_publish(out)
        self._set_state(ConnectionState.CONNECTED)
        return listener

    async def _supervise(self, listener: _Listener) -> None:
        """Wait for the connection to drop, then reconnect with backoff until it works or must stop."""
        try:
            while True:
                await listener.disconnected.wait()
                if self._closing:
                    return
                code, reason = listener.close_code, listener.close_reason
                if code in FINAL_CLOSE_CODES:
                    logger.warning("session %r ended by the broker: %d %s", self.session_name, code, reason)
                    self._finish(
                        SessionEnded(
                            f"session ended by the broker: {code} {reason}".rstrip(), close_code=code, reason=reason
                        )
                    )
                    return
                logger.info("connection lost (close code %s); reconnecting", code)
                next_listener = await self._reconnect(code, reason)
                if next_listener is None:
                    return
                listener = next_listener
        except Exception as exc:
            logger.exception("reconnect supervisor failed")
            self._finish(exc)

    async def _reconnect(self, code: int | None, reason: str) -> _Listener | None:
        attempt = 0
        while True:
            if self.reconnect.gives_up_after(attempt):
                self._finish(
                    ConnectionClosed(
                        f"connection lost; gave up after {attempt} reconnect attempts", close_code=code, reason=reason
                    )
                )
                return None
            attempt += 1
            self._set_state(ConnectionState.RECONNECTING)
            await asyncio.sleep(self.reconnect.delay_s(attempt))
            self._set_state(ConnectionState.CONNECTING)
            try:
                listener = await self._connect()
            except InitRefused as exc:
                logger.warning("reconnect refused: %s", exc.error)
                self._finish(exc)
                return None
            except (OSError, WSError, TimeoutError, ConnectionClosed) as exc:
                logger.info("reconnect attempt %d failed: %s", attempt, type(exc).__name__)
                continue
            self.stats.reconnects += 1
            return listener

    def _on_disconnected(self, listener: _Listener) -> None:
        if listener is not self._listener:
            return
        self._open = False
        self._transport = None
        waiter = self._init_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                ConnectionClosed(
                    "connection closed during init", close_code=listener.close_code, reason=listener.close_reason
                )
            )
        # The new connection will not hold this subscription: the unsubscribe is done.
        for waiters in self._unsubscribing.values():
            for unsub in waiters:
                if not unsub.done():
                    unsub.set_result(None)
        self._unsubscribing.clear()
        if not self._closing:
            self._set_state(ConnectionState.RECONNECTING)

    def _finish(self, error: BaseException | None) -> None:
        """Stop for good: ``close()`` (error None) or an error nothing can fix."""
        if self._closing:
            return
        self._closing = True
        self._open = False
        self._error = error
        if self._unrouted_timer is not None:
            self._unrouted_timer.cancel()
            self._unrouted_timer = None
        self._unrouted.clear()
        ended = error or ConnectionClosed("client closed")
        for out in list(self._outgoing.values()):
            self._complete(out, ended)
        for route in self._routes.values():
            self._end_route(route, error)
        self._routes.clear()
        for waiters in self._unsubscribing.values():
            for unsub in waiters:
                if not unsub.done():
                    unsub.set_exception(ended)
        self._unsubscribing.clear()
        closed = self._closed
        if closed is not None and not closed.done():
            if error is None:
                closed.set_result(None)
            else:
                closed.set_exception(error)
                closed.add_done_callback(lambda f: f.exception())
        if error is not None:
            transport = self._transport
            if transport is not None and not transport.is_disconnected:
                transport.disconnect()
        self._set_state(ConnectionState.CLOSED)

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise ConnectionClosed("client closed")

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        self._state = state
        if self._debug:
            logger.debug("state: %s", state.value)
        if self._on_state is not None:
            self._call(self._on_state, state)

    def _call(self, callback: Callable[..., Awaitable[None] | None], *args: object) -> None:
        """Run a user callback; schedule it when it returns an awaitable; log what it raises."""
        try:
            result = callback(*args)
        except Exception:
            logger.exception("callback %r raised", callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("async callback raised", exc_info=task.exception())

    def _send(self, frame: bytes) -> bool:
        transport = self._transport
        if not self._open or transport is None or transport.is_disconnected:
            return False
        transport.send(_TEXT, frame)
        return True

    # -------------------------------------------------------------- frames in

    def _on_text(self, listener: _Listener, payload: bytes) -> None:
        if listener is not self._listener:
            return  # a late frame of a connection already replaced
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            logger.warning("ignoring a frame that is not JSON")
            return
        if not isinstance(frame, dict):
            logger.warning("ignoring a frame that is not a JSON object")
            return
        handler = self._handlers.get(frame.get("type"))  # type: ignore[arg-type]
        if handler is None:
            logger.warning("ignoring a frame of unknown type %r", str(frame.get("type"))[:64])
            return
        try:
            handler(self, frame)
        except Exception:
            logger.exception("failed to handle a %r frame", frame.get("type"))

    def _on_init_response(self, frame: dict[str, Any]) -> None:
        waiter = self._init_waiter
        if waiter is None or waiter.done():
            return
        if frame.get("success") is True:
            waiter.set_result(frame)
        else:
            error = str(frame.get("error", "init refused"))
            waiter.set_exception(InitRefused(error, response_type="init_response", code=wire_code(frame.get("code"))))

    def _on_subscribe_response(self, frame: dict[str, Any]) -> None:
        topic = frame.get("topic")
        route = self._routes.get(topic) if isinstance(topic, str) else None
        if route is None:
            return
        if frame.get("success") is True:
            if not route.ready.done():
                route.ready.set_result(None)
            return
        error = RequestRefused(
            str(frame.get("error", "subscribe refused")),
            response_type="subscribe_response",
            code=wire_code(frame.get("code")),
        )
        logger.warning("subscription to %r refused: %s", route.topic, error.error)
        del self._routes[route.topic]
        self._end_route(route, error)

    def _on_unsubscribe_response(self, frame: dict[str, Any]) -> None:
        topic = frame.get("topic")
        waiters = self._unsubscribing.get(topic) if isinstance(topic, str) else None
        if not waiters:
            return
        waiter = waiters.popleft()
        if not waiters:
            del self._unsubscribing[topic]  # type: ignore[arg-type]
        if waiter.done():
            return
        if frame.get("success") is True:
            waiter.set_result(None)
        else:
            waiter.set_exception(
                RequestRefused(
                    str(frame.get("error", "unsubscribe refused")),
                    response_type="unsubscribe_response",
                    code=wire_code(frame.get("code")),
                )
            )

    def _on_publish_response(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("messageId")
        out = self._outgoing.get(message_id) if isinstance(message_id, str) else None
        if out is None:
            return
        if frame.get("success") is not True:
            error = str(frame.get("error", "publish refused"))
            self._complete(out, PublishRefused(error, message_id=out.message_id, code=wire_code(frame.get("code"))))
            return
        delivered_to = frame.get("deliveredTo")
        delivered = delivered_to if isinstance(delivered_to, int) else 0
        first_answer = not out.answered
        out.answered = True
        if not out.response.done():
            out.response.set_result(PublishResult(out.message_id, delivered, frame.get("duplicate") is True, out.acked))
        if out.acked or out.qos == 0 or delivered == 0:
            self._complete(out)
        elif first_answer:
            # Now waiting for ack_received. The re-sends already made still count: an answer to a
            # re-send (``duplicate``) must not restart the count, or AckTimeout could never come.
            self._arm(out)

    def _on_ack_received(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("messageId")
        out = self._outgoing.get(message_id) if isinstance(message_id, str) else None
        if out is None:
            return
        out.acked = True
        if out.answered:
            self._complete(out)

    def _on_message(self, frame: dict[str, Any]) -> None:
        self.stats.received += 1
        topic, data, message_id = frame.get("topic"), frame.get("data"), frame.get("messageId")
        timestamp, retry, hash_ = frame.get("timestamp"), frame.get("retry", 0), frame.get("hash")
        if not (
            isinstance(topic, str)
            and isinstance(data, str)
            and isinstance(message_id, str)
            and (hash_ is None or isinstance(hash_, str))
            and isinstance(retry, int)
        ):
            self._reject("?", "?", "malformed message frame")
            return
        wants_ack = frame.get("qos") != 0
        if self._seen.seen(message_id):
            self.stats.duplicates += 1
            if wants_ack:
                self._ack(topic, message_id)
            return
        try:
            payload = self._cipher.open(data, hash_, topic=topic, message_id=message_id)
        except EnvelopeError as exc:
            self._reject(topic, message_id, exc.error)
            return
        if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
            timestamp = 0
        message = Message(
            topic, payload, timestamp, message_id, retry, 1 if wants_ack else 0, frame.get("retained") is True
        )
        routes = self._routes_of(topic)
        if routes:
            self._hand_over(message, routes, wants_ack)
        else:
            self._hold(message, wants_ack)

    def _routes_of(self, topic: str) -> list[_Route]:
        """The routes whose filter matches ``topic`` and that have a consumer."""
        return [
            route
            for route in self._routes.values()
            if (route.callbacks or route.subscriptions) and filter_matches(route.topic, topic)
        ]

    def _hand_over(self, message: Message, routes: list[_Route], wants_ack: bool) -> None:
        """Give ``message`` to every consumer of ``routes``, then ack it (the application has it)."""
        self._seen.add(message.message_id)
        for route in routes:
            for subscription in route.subscriptions:
                subscription._put(message)
            for callback in route.callbacks:
                self._call(callback, message.data, message.timestamp)
        self.stats.delivered += 1
        if wants_ack:
            self._ack(message.topic, message.message_id)

    def _hold(self, message: Message, wants_ack: bool) -> None:
        """Keep a message no route matches yet, unacked, for ``UNROUTED_GRACE_S``."""
        held = self._unrouted
        if message.message_id in held:
            return  # a redelivery of one already held
        if len(held) >= UNROUTED_CAPACITY:
            del held[next(iter(held))]
            self.stats.unrouted += 1
        loop = asyncio.get_running_loop()
        held[message.message_id] = (message, wants_ack, loop.time())
        self.stats.held += 1
        if self._unrouted_timer is None:
            self._unrouted_timer = loop.call_later(UNROUTED_GRACE_S, self._drop_unclaimed)

    def _route_held(self) -> None:
        """A route got a consumer: hand it the held messages it matches."""
        for message_id, (message, wants_ack, _) in list(self._unrouted.items()):
            routes = self._routes_of(message.topic)
            if routes and self._unrouted.pop(message_id, None) is not None:
                self.stats.routed_late += 1
                self._hand_over(message, routes, wants_ack)

    def _drop_unclaimed(self) -> None:
        """Drop held messages whose grace ended (unacked: the broker redelivers them); re-arm for the rest."""
        self._unrouted_timer = None
        loop = asyncio.get_running_loop()
        horizon = loop.time() - UNROUTED_GRACE_S
        held = self._unrouted
        while held:
            message_id, (_, _, arrived) = next(iter(held.items()))
            if arrived > horizon:
                self._unrouted_timer = loop.call_later(arrived - horizon, self._drop_unclaimed)
                return
            del held[message_id]
            self.stats.unrouted += 1

    def _ack(self, topic: str, message_id: str) -> None:
        if self._send(orjson.dumps({"type": "ack", "topic": topic, "messageId": message_id})):
            self.stats.acks_sent += 1

    def _reject(self, topic: str, message_id: str, reason: str) -> None:
        """Count a message that failed its check; warn at most once a second. No ack: it comes back."""
        self.stats.rejected += 1
        now = time.monotonic()
        if now - self._reject_warned_at < REJECT_WARNING_INTERVAL_S:
            self._rejects_unwarned += 1
            return
        logger.warning(
            "rejected message %s on %r: %s (%d more rejected since the last warning)",
            message_id,
            topic,
            reason,
            self._rejects_unwarned,
        )
        self._reject_warned_at = now
        self._rejects_unwarned = 0

    def _on_error(self, frame: dict[str, Any]) -> None:
        logger.warning("broker error %s: %s", frame.get("code"), str(frame.get("error"))[:200])

    _handlers: Final[dict[str, Callable[[Client, dict[str, Any]], None]]] = {
        "init_response": _on_init_response,
        "subscribe_response": _on_subscribe_response,
        "unsubscribe_response": _on_unsubscribe_response,
        "publish_response": _on_publish_response,
        "ack_received": _on_ack_received,
        "message": _on_message,
        "error": _on_error,
    }
