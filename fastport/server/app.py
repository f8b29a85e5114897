"""Assembly: uvloop, one listening socket for HTTP and WebSocket, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Final

from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # real class, missing from picows's stub

from fastport import _speedups
from fastport._speedups import Flusher
from fastport.broker.cluster import ClusterLink, NullClusterLink
from fastport.broker.core import Broker
from fastport.broker.journal import Journal, NullJournal
from fastport.broker.recovery import restore
from fastport.config import ServerConfig, SessionSettings
from fastport.engines.redis import RedisEngine
from fastport.engines.sqlite import SqliteJournal, SqliteStore
from fastport.errors import CloseCode, ErrorCode, SessionError
from fastport.log import install_client_caused_filter, reopen_log_files
from fastport.metrics import ServerCounters
from fastport.server.admin import AdminAuth, load_or_create_token, token_path
from fastport.server.client_address import parse_networks
from fastport.server.front import FrontProtocol, make_ws_protocol
from fastport.server.http import RestApi
from fastport.server.idle import IdleSweeper
from fastport.server.ws import BrokerListener, ListenerShared

logger = logging.getLogger("fastport.server")

SHUTDOWN_GRACE_S: Final = 3.0
#: The session ``--admin-session`` creates (the original fastPort's name for it).
ADMIN_SESSION: Final = "admin_session"


class FastportServer:
    """A running broker: the listening socket, the broker and the REST API.

    Use ``await FastportServer.start(config)``, then ``await server.close()``.
    """

    def __init__(
        self,
        config: ServerConfig,
        broker: Broker,
        server: asyncio.Server,
        admin_token: str,
        listeners: set[BrokerListener],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        #: The one TLS context of the listening socket: ``reload`` loads a new pair into it.
        self.ssl_context = ssl_context
        self.broker = broker
        self.admin_token = admin_token
        self._server = server
        self._listeners = listeners
        self.counters = ServerCounters()
        self.idle_sweeper: IdleSweeper | None = None
        self._client_caused = install_client_caused_filter()
        self._client_caused.listeners.add(self._count_client_protocol_error)

    def _count_client_protocol_error(self) -> None:
        """A frame picows's parser refused (``fastport.log.ClientCausedFilter`` saw its line)."""
        self.counters.ws_protocol_errors += 1

    @classmethod
    async def start(cls, config: ServerConfig) -> FastportServer:
        """Listen on ``config.host:config.port`` and serve until ``close``.

        Raises:
            ConfigError: the data dir or admin token is unusable.
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        # The store first: a store that cannot be opened stops startup before anything is written.
        journal: Journal = SqliteJournal(SqliteStore.open(config.store), loop.time) if config.store else NullJournal()
        token = config.admin_token or load_or_create_token(config.data_dir)
        admin = AdminAuth(token, config.admin_user, config.admin_pass)
        cluster: ClusterLink = RedisEngine(config.engine, config.engine_prefix) if config.engine else NullClusterLink()
        broker = Broker(loop, config.limits, journal, cluster)
        report = restore(broker, journal.load())
        if config.store:
            logger.info(
                "store %s: restored %d session(s), %d durable client(s), %d held message(s), %d retained",
                config.store,
                report.sessions,
                report.durable_clients,
                report.held_messages,
                report.retained,
            )
        await cluster.start(broker)
        if config.admin_session:
            await _ensure_admin_session(broker, config)
        counters = ServerCounters()
        api = RestApi(broker, admin, counters, metrics_open=config.metrics_open)
        flusher = Flusher(loop.call_soon)
        live: set[BrokerListener] = set()
        shared = ListenerShared(broker, flusher, live, config.max_frame_size, counters)
        allowed_origins = frozenset(config.allowed_origins)
        trusted_proxies = parse_networks(config.trusted_proxies)

        def ws_factory(remote: str) -> WSProtocol:
            def listener_factory(request: WSUpgradeRequest) -> BrokerListener | WSUpgradeResponseWithListener:
                if allowed_origins:
                    origin = request.headers.get("origin")
                    if origin is not None and origin.strip().lower().rstrip("/") not in allowed_origins:
                        counters.ws_origin_rejected += 1
                        logger.info("refused upgrade from %s: origin %r not allowed", remote, origin[:200])
                        response = WSUpgradeResponse.create_error_response(403, b"origin not allowed")
                        return WSUpgradeResponseWithListener(response, None)
                return BrokerListener(shared, remote)

            return make_ws_protocol(
                listener_factory,
                max_frame_size=config.max_frame_size,
                handshake_timeout_s=config.ws_handshake_timeout_s,
            )

        def front_factory() -> FrontProtocol:
            return FrontProtocol(
                api,
                ws_factory,
                max_body_size=config.max_body_size,
                head_timeout_s=config.http_head_timeout_s,
                counters=counters,
                trusted_proxies=trusted_proxies,
            )

        ssl_context = config.ssl_context()
        server = await loop.create_server(
            front_factory,
            config.host,
            config.port,
            reuse_address=True,
            reuse_port=config.reuse_port or None,
            ssl=ssl_context,
        )
        instance = cls(config, broker, server, token, live, ssl_context)
        instance.counters = counters
        if config.idle_timeout_s > 0:
            instance.idle_sweeper = IdleSweeper(loop, live, config.idle_timeout_s, config.ping_timeout_s)
            instance.idle_sweeper.start()
        return instance

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def urls(self) -> list[str]:
        """``host:port`` of every listening socket."""
        urls = []
        for sock in self._server.sockets:
            host, port = sock.getsockname()[:2]
            urls.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return urls

    def reload(self) -> bool:
        """Load the TLS certificate and key again and reopen log files (SIGHUP); never stops the broker.

        New handshakes present the new pair; established connections keep theirs. A pair that
        does not load is logged as an error and the old one stays.

        Returns:
            False when the new pair was refused.
        """
        reopened = reopen_log_files()
        ok = True
        config, context = self.config, self.ssl_context
        if context is not None and config.tls_cert is not None and config.tls_key is not None:
            try:
                # Try the pair on a scratch context first: a failed load can leave a context half changed.
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(config.tls_cert, config.tls_key)
                context.load_cert_chain(config.tls_cert, config.tls_key)
            except (OSError, ssl.SSLError) as exc:
                ok = False
                logger.error(
                    "reload: cannot load TLS certificate %s / key %s, keeping the old one: %s",
                    config.tls_cert,
                    config.tls_key,
                    exc,
                )
        logger.info(
            "reloaded: %s, %s",
            ("TLS certificate " + str(config.tls_cert) if ok else "old TLS certificate kept")
            if context is not None
            else "no TLS",
            f"{reopened} log file(s) reopened" if reopened else "logging to stderr",
        )
        return ok

    async def close(self) -> None:
        """Stop accepting, close every WebSocket with 1001 and stop the broker."""
        self._server.close()
        self._client_caused.listeners.discard(self._count_client_protocol_error)
        if self.idle_sweeper is not None:
            self.idle_sweeper.stop()
        for listener in list(self._listeners):
            listener.close(CloseCode.GOING_AWAY, "server shutting down")
        self.broker.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), SHUTDOWN_GRACE_S)
        except TimeoutError:
            logger.warning("connections still open after %.0f s; exiting anyway", SHUTDOWN_GRACE_S)
        await self.broker.journal.close()
        await self.broker.cluster.close()


async def _ensure_admin_session(broker: Broker, config: ServerConfig) -> None:
    """Create ``admin_session`` (password ``ADMIN_PASS``) unless this node or another one already has it."""
    assert config.admin_pass is not None
    if broker.sessions.get(ADMIN_SESSION) is not None:
        logger.info("session %r exists: kept as it is", ADMIN_SESSION)
        return
    try:
        await broker.admin.create(ADMIN_SESSION, config.admin_pass, SessionSettings())
    except SessionError as exc:
        if exc.error_code != ErrorCode.SESSION_EXISTS:
            raise
        logger.info("session %r exists on another node: kept as it is", ADMIN_SESSION)


async def serve(config: ServerConfig) -> None:
    """Run the broker until SIGINT or SIGTERM, then shut down gracefully; SIGHUP reloads (``FastportServer.reload``)."""
    # Handlers first: a signal that arrives while starting still means a clean shutdown.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started: list[FastportServer] = []

    def hangup() -> None:
        if started:
            started[0].reload()
        else:
            logger.info("SIGHUP while starting: the certificate and key are being loaded anyway")

    loop.add_signal_handler(signal.SIGHUP, hangup)
    server = await FastportServer.start(config)
    started.append(server)
    logger.info(
        "fastport listening on %s (%s), hot path: %s (%s)",
        ", ".join(server.urls),
        "HTTPS and WSS" if config.tls_cert else "HTTP and WebSocket",
        _speedups.IMPLEMENTATION,
        ", ".join(f"{module} {twin}" for module, twin in _speedups.IMPLEMENTATIONS.items()),
    )
    if not config.admin_token:
        logger.info("admin token: %s", token_path(config.data_dir))
    await stop.wait()
    logger.info("shutting down")
    await server.close()


def run(config: ServerConfig) -> None:
    """Run ``serve`` on uvloop (or asyncio where uvloop is unavailable)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
