"""The asyncio fastport client: publish and subscribe over one WebSocket, with end-to-end envelopes.

``Client`` is the asyncio + picows adapter over ``ClientProtocol`` (``fastport/client/protocol.py``), the
sans-I/O core that decides every rule below: this module connects, feeds it the received text frames and the
loop's time, writes what it wants sent, runs one ``loop.call_at`` for its next deadline, resolves the futures
``emit``/``get`` wait on, calls callbacks and fills iterators, and supervises reconnects.

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
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Final, Literal, Self, Union, cast

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
from fastport.client.crypto import EnvelopeVersion
from fastport.client.errors import AckTimeout, ConnectionClosed, EnvelopeError, InitRefused, SessionEnded
from fastport.client.protocol import (
    UNROUTED_CAPACITY,
    UNROUTED_GRACE_S,
    BrokerError,
    ClientProtocol,
    Event,
    FrameIgnored,
    InitAccepted,
    InitFailed,
    MessageDropped,
    MessageReceived,
    MessageRejected,
    PublishAnswered,
    PublishConfirmed,
    PublishFailed,
    RouteEnded,
    SubscribeAnswered,
    UnsubscribeAnswered,
)
from fastport.client.seen_ids import DEFAULT_CAPACITY
from fastport.client.values import ConnectionState, Message, PublishResult
from fastport.errors import CloseCode, ConfigError

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
DEFAULT_MAX_FRAME_SIZE: Final = 64 << 20

_TEXT: Final = WSMsgType.TEXT
_CONTINUATION: Final = WSMsgType.CONTINUATION
_CLOSE: Final = WSMsgType.CLOSE

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "UNROUTED_CAPACITY",
    "UNROUTED_GRACE_S",
    "Client",
    "MessageCallback",
    "StateCallback",
    "Subscription",
]


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


Consumer = Union[MessageCallback, "Subscription"]
"""What a route hands messages to: a ``get`` callback or a ``subscribe`` iterator."""


class Subscription:
    """An async iterator over the messages of one topic filter (``Client.subscribe``).

    Messages are queued from the moment ``subscribe`` returns, so none is missed before
    iteration starts. Iteration ends when the topic is unsubscribed or the client closed, and
    raises the client's error when it stopped on one (or ``RequestRefused`` when the broker
    refused the subscription).
    """

    def __init__(self, client: Client, topic: str, ready: asyncio.Future[None]) -> None:
        self._client = client
        self._topic = topic
        self._ready = ready
        self._queue: asyncio.Queue[Message | BaseException | None] = asyncio.Queue()
        self._finished = False

    @property
    def topic(self) -> str:
        """The topic filter this subscription follows."""
        return self._topic

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
        await self._client._wait_ready(self._ready)

    def close(self) -> None:
        """Stop this iterator; the topic stays subscribed (see ``Client.unsubscribe``)."""
        self._client._protocol.remove_consumer(self._topic, self)
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
            self._protocol: ClientProtocol[Consumer] = ClientProtocol(
                session_name,
                password,
                key,
                client_id=client_id,
                durable=durable,
                envelope=envelope,
                retry_interval_s=retry_interval_s,
                max_retries=max_retries,
                dedup_capacity=dedup_capacity,
            )
        except EnvelopeError as exc:
            raise ConfigError(f"unusable key: {exc.error}") from None
        self.url = url
        self.session_name = session_name
        self.client_id = client_id
        self.durable = durable
        self.reconnect = reconnect if reconnect is not None else ReconnectPolicy()
        self.request_timeout_s = request_timeout_s
        self.ping_interval_s = ping_interval_s
        self._ssl_context = ssl_context
        self._on_state = on_state
        self._max_frame_size = max_frame_size
        self.stats = self._protocol.stats
        self.resumed = False
        self._state = ConnectionState.CLOSED
        #: topic filter -> resolved by the first subscribe_response (one per route of the protocol).
        self._ready: dict[str, asyncio.Future[None]] = {}
        #: messageId -> the futures ``emit`` waits on: the answer, and the ack when it waits for one.
        self._emits: dict[str, tuple[asyncio.Future[PublishResult], asyncio.Future[None] | None]] = {}
        #: unsubscribe request id -> its waiter.
        self._unsubscribing: dict[int, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transport: WSTransport | None = None
        self._listener: _Listener | None = None
        self._init_waiter: asyncio.Future[InitAccepted] | None = None
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
    def envelope(self) -> EnvelopeVersion:
        """The envelope version publishes are sealed with (``v1`` or ``v2``)."""
        return self._protocol.envelope

    @property
    def retry_interval_s(self) -> float:
        """Seconds before an unconfirmed publish is re-sent."""
        return self._protocol.retry_interval_s

    @property
    def max_retries(self) -> int:
        """Re-sends of an unconfirmed publish before ``AckTimeout``."""
        return self._protocol.max_retries

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
            except ssl.SSLCertVerificationError:
                raise  # the same certificate fails the same way on every attempt
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
        message_id: str | None = None,
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
            message_id: the ``messageId`` to publish under (default: a new UUID); it must be
                unique in the session, or the broker answers it as a duplicate.

        Returns:
            The broker's answer; ``acked`` tells whether a subscriber acknowledged it.

        Raises:
            InvalidTopic: a bad topic (also a ValueError).
            PublishRefused: ``publish_response`` with ``success: false``.
            AckTimeout: no answer (or ack) after ``max_retries`` re-sends.
            ConnectionClosed: the client closed, or stopped on an error (then that error).
        """
        self._check_usable()
        loop = asyncio.get_running_loop()
        message_id = self._protocol.publish(
            topic,
            message,
            qos=qos,
            retain=retain,
            now=loop.time(),
            timestamp_ms=int(time.time() * 1000),
            message_id=message_id,
        )
        response: asyncio.Future[PublishResult] = loop.create_future()
        ack: asyncio.Future[None] | None = loop.create_future() if wait_ack and qos == 1 else None
        self._emits[message_id] = (response, ack)
        self._flush()
        result = await response
        if ack is not None and result.delivered_to > 0 and not result.acked:
            await ack
            result = replace(result, acked=True)
        return result

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
        ready = self._add_route(topic, qos, lambda ready: callback)
        await self._wait_ready(ready)

    def subscribe(self, topic: str, *, qos: Literal[0, 1] = 1) -> Subscription:
        """Subscribe to ``topic`` (a filter) and return an async iterator over its messages.

        Use ``async for message in client.subscribe("sensors/#"): ...``. A refusal by the broker
        is raised (``RequestRefused``) by the iteration.

        Raises:
            InvalidTopic: a bad filter.
        """
        subscription: Subscription | None = None

        def make(ready: asyncio.Future[None]) -> Subscription:
            nonlocal subscription
            subscription = Subscription(self, topic, ready)
            return subscription

        self._add_route(topic, qos, make)
        assert subscription is not None
        return subscription

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``: its callbacks are dropped and its iterators end.

        Raises:
            RequestRefused: the broker refused (it did not know the subscription).
            TimeoutError: no answer within ``request_timeout_s``.
        """
        request_id, consumers = self._protocol.unsubscribe(topic)
        self._end_route(self._ready.pop(topic, None), consumers, None)
        if request_id is None:
            return  # not connected: the next connection simply does not resubscribe it
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unsubscribing[request_id] = waiter
        self._flush()
        await asyncio.wait_for(waiter, self.request_timeout_s)

    def _add_route(
        self, topic: str, qos: int, consumer_for: Callable[[asyncio.Future[None]], Consumer]
    ) -> asyncio.Future[None]:
        """Register the consumer ``consumer_for(ready)`` on ``topic``; return the future of its first answer."""
        self._check_usable()
        ready = self._ready.get(topic)
        fresh = ready is None
        if ready is None:
            ready = asyncio.get_running_loop().create_future()
            # Mark a refusal as retrieved even when no iterator ever awaits it.
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        events = self._protocol.add_route(topic, consumer_for(ready), qos=qos)  # raises on a bad filter or qos
        if fresh:
            self._ready[topic] = ready
        self._handle(events)
        return ready

    async def _wait_ready(self, ready: asyncio.Future[None]) -> None:
        if ready.done():
            return ready.result()
        if self._protocol.is_open:
            await asyncio.wait_for(asyncio.shield(ready), self.request_timeout_s)
        else:
            await asyncio.shield(ready)

    def _end_route(
        self, ready: asyncio.Future[None] | None, consumers: tuple[Consumer, ...], error: BaseException | None
    ) -> None:
        if ready is not None and not ready.done():
            ready.set_exception(error or ConnectionClosed("subscription ended"))
        for consumer in consumers:
            if isinstance(consumer, Subscription):
                consumer._end(error)

    # --------------------------------------------------------------- connections

    async def _connect(self) -> _Listener:
        """Open a connection and ``init`` it (the protocol then resubscribes and re-sends); return its listener."""
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
        loop = asyncio.get_running_loop()
        waiter = self._init_waiter = loop.create_future()
        try:
            self._protocol.connection_made(loop.time())
            self._flush()
            accepted = await asyncio.wait_for(waiter, self.request_timeout_s)
        except BaseException:
            transport.disconnect(graceful=False)
            raise
        finally:
            self._init_waiter = None
        # The protocol opened at init_response and queued the resubscribes and re-sends, already written.
        self.resumed = accepted.resumed
        logger.info("connected to session %r%s", self.session_name, " (resumed)" if self.resumed else "")
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
        self._transport = None
        waiter = self._init_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                ConnectionClosed(
                    "connection closed during init", close_code=listener.close_code, reason=listener.close_reason
                )
            )
        self._handle(self._protocol.connection_lost(asyncio.get_running_loop().time()))
        if not self._closing:
            self._set_state(ConnectionState.RECONNECTING)

    def _finish(self, error: BaseException | None) -> None:
        """Stop for good: ``close()`` (error None) or an error nothing can fix."""
        if self._closing:
            return
        self._closing = True
        self._error = error
        self._handle(self._protocol.close(error))
        self._ready.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
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

    # ------------------------------------------------------------ the protocol's I/O

    def _on_text(self, listener: _Listener, payload: bytes) -> None:
        if listener is not self._listener:
            return  # a late frame of a connection already replaced
        try:
            events = self._protocol.receive(payload, asyncio.get_running_loop().time())
        except Exception:
            logger.exception("failed to handle a frame")
            return
        self._handle(events)

    def _flush(self) -> None:
        """Write what the protocol queued, then keep one timer at its next deadline."""
        data = self._protocol.data_to_send()
        transport = self._transport
        if data and transport is not None and not transport.is_disconnected:
            for payload in data:
                transport.send(_TEXT, payload)
        deadline = self._protocol.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = self._timer_at = None
        now = asyncio.get_running_loop().time()
        # call_at may run a little before its time (the loop's clock resolution): the deadline is due.
        self._handle(self._protocol.due(now if deadline is None else max(now, deadline)))

    def _handle(self, events: list[Event[Consumer]]) -> None:
        """Act on the protocol's events (hand messages over, resolve futures), then flush its output."""
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("failed to handle %s", type(event).__name__)
        self._flush()

    def _on_event(self, event: Event[Consumer]) -> None:
        if isinstance(event, MessageReceived):
            message = event.message
            for consumer in event.consumers:
                if isinstance(consumer, Subscription):
                    consumer._put(message)
                else:
                    self._call(consumer, message.data, message.timestamp)
            # The application has it: now, and only now, the protocol marks it seen and queues its ack.
            self._protocol.handed_over(message.message_id)
        elif isinstance(event, PublishAnswered):
            futures = self._emits.get(event.message_id)
            if futures is not None and not futures[0].done():
                futures[0].set_result(event.result)
        elif isinstance(event, PublishConfirmed):
            futures = self._emits.pop(event.message_id, None)
            if futures is not None and futures[1] is not None and not futures[1].done():
                futures[1].set_result(None)
        elif isinstance(event, PublishFailed):
            self._publish_failed(event)
        elif isinstance(event, SubscribeAnswered):
            if event.error is None:
                ready = self._ready.get(event.topic)
                if ready is not None and not ready.done():
                    ready.set_result(None)
                return
            logger.warning("subscription to %r refused: %s", event.topic, event.error.error)
            self._end_route(self._ready.pop(event.topic, None), event.consumers, event.error)
        elif isinstance(event, UnsubscribeAnswered):
            waiter = self._unsubscribing.pop(event.request_id, None)
            if waiter is not None and not waiter.done():
                if event.error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(event.error)
        elif isinstance(event, InitAccepted | InitFailed):
            init_waiter = self._init_waiter
            if init_waiter is not None and not init_waiter.done():
                if isinstance(event, InitAccepted):
                    init_waiter.set_result(event)
                else:
                    init_waiter.set_exception(event.error)
        elif isinstance(event, RouteEnded):
            self._end_route(self._ready.pop(event.topic, None), event.consumers, event.error)
        elif isinstance(event, MessageRejected):
            self._reject(event.topic, event.message_id, event.reason)
        elif isinstance(event, MessageDropped):
            if self._debug:
                logger.debug("dropped unrouted message %s on %r (not acked)", event.message_id, event.topic)
        elif isinstance(event, BrokerError):
            logger.warning("broker error %s: %s", event.code, event.error[:200])
        elif isinstance(event, FrameIgnored):
            logger.warning("ignoring a frame: %s", event.reason[:200])

    def _publish_failed(self, event: PublishFailed) -> None:
        """Fail whichever future ``emit`` is (or will be) waiting on."""
        error = event.error
        if isinstance(error, AckTimeout):
            logger.warning("publish %s: %s; giving up", event.message_id, error.error)
        futures = self._emits.pop(event.message_id, None)
        if futures is None:
            return
        response, ack = futures
        if not response.done():
            response.set_exception(error)
            if ack is not None:
                ack.cancel()  # emit raises at the response and never awaits the ack
        elif ack is not None and not ack.done():
            ack.set_exception(error)

    def _reject(self, topic: str, message_id: str, reason: str) -> None:
        """Warn of a message that failed its check (counted, not acked: it comes back), at most once a second."""
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
