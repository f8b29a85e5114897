"""Session administration: create, drop, suspend and resume sessions, and end them at their expiry.

Creating a session returns once the journal committed it. Dropping one closes its sockets
(4001; 4002 when it expired) and forgets all of its state, here and, through the cluster link,
on every node. A suspended session takes no new ``init`` and no publish; connected sockets stay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastport.errors import CloseCode

if TYPE_CHECKING:
    from fastport.broker.cluster import ClusterLink
    from fastport.broker.connection import Connection
    from fastport.broker.durable import Subscribers
    from fastport.broker.journal import Journal
    from fastport.broker.scheduler import Scheduler
    from fastport.broker.sessions import Session, SessionRegistry
    from fastport.config import SessionSettings

logger = logging.getLogger("fastport.broker")


class SessionAdmin:
    """Creates, drops, suspends and expires sessions.

    Args:
        loop: the running event loop (background drops on other nodes).
        scheduler: the broker's timers (session expiry).
        sessions: the session registry.
        subscribers: subscriber lifecycle (a dropped session's subscribers are released).
        journal: where sessions are recorded.
        cluster: the link to other nodes (shared sessions).
        disconnect: forgets one connection of a dropped session before its socket is closed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        scheduler: Scheduler,
        sessions: SessionRegistry,
        subscribers: Subscribers,
        journal: Journal,
        cluster: ClusterLink,
        disconnect: Callable[[Connection], None],
    ) -> None:
        self._loop = loop
        self._scheduler = scheduler
        self._sessions = sessions
        self._subscribers = subscribers
        self._journal = journal
        self._cluster = cluster
        self._disconnect = disconnect
        self._tasks: set[asyncio.Task[None]] = set()
        sessions.on_loaded = self.arm_expiry

    async def create(self, name: str, password: str, settings: SessionSettings) -> tuple[Session, str]:
        """Create a session; returns it and its secret key (see ``SessionRegistry.create``)."""
        session, secret_key = await self._sessions.create(name, password, settings)
        self.arm_expiry(session)
        self._journal.session_saved(session)
        await self._journal.committed()
        logger.info("session %r created", name)
        return session, secret_key

    async def drop(self, name: str, password: str, secret_key: str) -> None:
        """Drop a session on its owner's credentials: close its sockets (4001) and forget all of its state."""
        await self._drop_everywhere(await self._sessions.authorize_owner(name, password, secret_key))

    async def drop_as_admin(self, name: str) -> None:
        """Drop a session on the admin credential (the caller checked it), without its own credentials."""
        await self._drop_everywhere(await self._sessions.existing(name))

    async def suspend(self, name: str, password: str, secret_key: str, suspend: bool) -> None:
        """Suspend (no new ``init``, no publish) or resume a session on its owner's credentials; sockets stay."""
        await self._suspend(await self._sessions.authorize_owner(name, password, secret_key), suspend)

    async def suspend_as_admin(self, name: str, suspend: bool) -> None:
        """Suspend or resume a session on the admin credential (the caller checked it)."""
        await self._suspend(await self._sessions.existing(name), suspend)

    async def _drop_everywhere(self, session: Session) -> None:
        self._drop(session, CloseCode.SESSION_DROPPED, "session dropped")
        await self._cluster.drop_session(session.name)
        logger.info("session %r dropped", session.name)

    async def _suspend(self, session: Session, suspend: bool) -> None:
        name = session.name
        session.suspended = suspend
        self._journal.session_suspended(session)
        await self._cluster.set_suspended(name, suspend)
        logger.info("session %r %s", name, "suspended" if suspend else "resumed")

    def arm_expiry(self, session: Session) -> None:
        """End ``session`` at its ``sessionExpiry`` (a no-op for a session without one)."""
        expires_at_ms = session.settings.expires_at_ms
        if expires_at_ms is None:
            return
        remaining_ms = expires_at_ms - int(time.time() * 1000)
        session.expiry_handle = self._scheduler.call_at(
            self._scheduler.now_ms() + max(remaining_ms, 0), self._expiry_due, session
        )

    def _expiry_due(self, session: Session, now_ms: int) -> None:
        expires_at = session.settings.expires_at_ms
        if session.dropped or expires_at is None:
            return
        if int(time.time() * 1000) < expires_at:
            self.arm_expiry(session)  # beyond the wheel's horizon, or the wall clock moved
            return
        logger.info("session %r expired", session.name)
        self._drop(session, CloseCode.SESSION_EXPIRED, "session expired")
        task = self._loop.create_task(self._cluster.drop_session(session.name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_remote_drop(self, session_name: str) -> None:
        """Another node dropped a session."""
        session = self._sessions.get(session_name)
        if session is not None:
            self._drop(session, CloseCode.SESSION_DROPPED, "session dropped")

    def on_remote_suspend(self, session_name: str, suspended: bool) -> None:
        """Another node suspended or resumed a session."""
        session = self._sessions.get(session_name)
        if session is not None:
            session.suspended = suspended

    def _drop(self, session: Session, code: int, reason: str) -> None:
        self._sessions.remove(session)
        self._journal.session_dropped(session.name)
        if session.expiry_handle is not None:
            self._scheduler.cancel(session.expiry_handle)
        for conn in list(session.connections):
            self._disconnect(conn)
            conn.close(code, reason)
        session.connections.clear()
        self._subscribers.forget_session(session)
        session.dedupe.clear()
        session.retained.clear()
        session.live_messages = 0

    def close(self) -> None:
        """Stop background drops (server shutdown)."""
        for task in list(self._tasks):
            task.cancel()
