"""The session registry: the tenant isolation boundary.

A session is a virtual broker: its own credentials, delivery settings, subscriber
index, inflight messages and connections. Nothing is ever looked up across sessions:
every piece of per-tenant state hangs off its ``Session`` object, so dropping a
session drops all of it.

Password hashing runs in the loop's default executor (scrypt releases the GIL).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from fastport.broker import credentials
from fastport.broker.dedupe import DedupeWindow
from fastport.broker.index import SubscriberIndex
from fastport.broker.journal import SessionRecord
from fastport.config import SessionSettings
from fastport.errors import AuthError, ErrorCode, SessionError

if TYPE_CHECKING:
    from fastport.broker.cluster import ClusterLink
    from fastport.broker.connection import Connection
    from fastport.broker.subscriber import Subscriber
    from fastport.protocol.frames import Publish

SESSION_NAME_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class Session:
    """One tenant: credentials, settings and all of its live state."""

    __slots__ = (
        "name",
        "settings",
        "suspended",
        "dropped",
        "connections",
        "index",
        "clients",
        "dedupe",
        "retained",
        "seq",
        "live_messages",
        "expiry_handle",
        "_password",
        "_secret_digest",
        "_verified_tag",
    )

    def __init__(
        self, name: str, password: credentials.PasswordHash, secret_digest: bytes, settings: SessionSettings
    ) -> None:
        self.name = name
        self.settings = settings
        self.suspended = False
        self.dropped = False
        self.connections: set[Connection] = set()
        self.index = SubscriberIndex()
        #: Subscribers by clientId (durable ones stay here while offline).
        self.clients: dict[str, Subscriber] = {}
        #: Accepted messages by messageId, oldest first: the dedupe window (live ones included).
        self.dedupe = DedupeWindow()
        #: Last retained publish per topic, with its timestamp.
        self.retained: dict[str, tuple[Publish, int | float]] = {}
        self.seq = 0
        self.live_messages = 0
        self.expiry_handle: int | None = None
        self._password = password
        self._secret_digest = secret_digest
        self._verified_tag: bytes | None = None

    @property
    def password_hash(self) -> credentials.PasswordHash:
        """The salted hash of the session password (what a store keeps)."""
        return self._password

    @property
    def secret_digest(self) -> bytes:
        """The digest of the session secret key (what a store keeps)."""
        return self._secret_digest

    def record(self) -> SessionRecord:
        """What a store or another node keeps of this session."""
        password = self._password
        return SessionRecord(
            self.name, password.salt, password.digest, self._secret_digest, self.settings.to_store(), self.suspended
        )

    @classmethod
    def from_record(cls, record: SessionRecord) -> Session:
        """The session a store or another node kept (``record``), with no live state yet."""
        session = cls(
            record.name,
            credentials.PasswordHash(salt=record.salt, digest=record.digest),
            record.secret_digest,
            SessionSettings.from_store(record.settings),
        )
        session.suspended = record.suspended
        return session

    def __repr__(self) -> str:
        return f"<Session {self.name!r} connections={len(self.connections)} live={self.live_messages}>"


class SessionRegistry:
    """All sessions of one broker process, by name."""

    __slots__ = ("_cache", "_cluster", "_reserved", "_sessions", "on_loaded")

    def __init__(self, cluster: ClusterLink) -> None:
        self._sessions: dict[str, Session] = {}
        self._reserved: set[str] = set()
        self._cache = credentials.VerifiedCache()
        #: With other nodes, sessions made on them are looked up there.
        self._cluster = cluster
        #: Called with each session loaded from another node (to arm its expiry).
        self.on_loaded: Callable[[Session], None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        """Every live session (a snapshot: sessions may be dropped while iterating)."""
        return iter(list(self._sessions.values()))

    def restore(self, session: Session) -> None:
        """Add a session read back from a store."""
        self._sessions[session.name] = session

    def get(self, name: str) -> Session | None:
        """The live session called ``name``, or None."""
        return self._sessions.get(name)

    async def create(self, name: str, password: str, settings: SessionSettings) -> tuple[Session, str]:
        """Create a session and return it with its new secret key (shown once, stored hashed).

        Raises:
            SessionError: the name is invalid or already taken.
        """
        if not SESSION_NAME_RE.fullmatch(name):
            raise SessionError(
                "sessionName must be 1-128 characters without control characters",
                code=ErrorCode.INVALID_FIELD if name else ErrorCode.SESSION_NOT_FOUND,
                field="sessionName",
            )
        if name in self._sessions or name in self._reserved:
            raise SessionError("Session already exists", code=ErrorCode.SESSION_EXISTS)
        self._reserved.add(name)
        try:
            loop = asyncio.get_running_loop()
            password_hash = await loop.run_in_executor(None, credentials.hash_password, password)
            secret_key = credentials.new_secret_key()
            session = Session(name, password_hash, credentials.digest_secret_key(secret_key), settings)
            if not await self._cluster.create_session(session.record()):
                raise SessionError("Session already exists", code=ErrorCode.SESSION_EXISTS)
        finally:
            self._reserved.discard(name)
        session._verified_tag = self._cache.tag(password)
        self._sessions[name] = session
        return session, secret_key

    async def _password_ok(self, session: Session, password: str) -> bool:
        if self._cache.matches(password, session._verified_tag):
            return True
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, credentials.verify_password, password, session._password)
        if ok:
            session._verified_tag = self._cache.tag(password)
        return ok

    async def authenticate(self, name: str, password: str) -> Session:
        """Check a client's ``init`` credentials.

        Raises:
            SessionError: ``Session not found`` or ``Session is suspended``.
            AuthError: ``Invalid password``.
        """
        session = await self._find(name)
        if session is None:
            raise SessionError("Session not found", code=ErrorCode.SESSION_NOT_FOUND)
        if not await self._password_ok(session, password):
            raise AuthError("Invalid password", code=ErrorCode.INVALID_PASSWORD)
        if session.dropped:
            raise SessionError("Session not found", code=ErrorCode.SESSION_NOT_FOUND)
        if session.suspended:
            raise SessionError("Session is suspended", code=ErrorCode.SESSION_SUSPENDED)
        return session

    async def authorize_owner(self, name: str, password: str, secret_key: str) -> Session:
        """Check the credentials of a session's own admin operation (drop, suspend).

        Raises:
            SessionError: ``Session not found``.
            AuthError: ``Invalid credentials`` (wrong password or secret key).
        """
        session = await self._find(name)
        if session is None:
            raise SessionError("Session not found", code=ErrorCode.SESSION_NOT_FOUND)
        key_ok = credentials.secret_key_matches(secret_key, session._secret_digest)
        password_ok = await self._password_ok(session, password)
        if not (key_ok and password_ok):
            raise AuthError("Invalid credentials", code=ErrorCode.INVALID_CREDENTIALS)
        if session.dropped:
            raise SessionError("Session not found", code=ErrorCode.SESSION_NOT_FOUND)
        return session

    async def existing(self, name: str) -> Session:
        """The live session called ``name``, for an operation the admin credential authorized.

        Raises:
            SessionError: ``Session not found``.
        """
        session = await self._find(name)
        if session is None or session.dropped:
            raise SessionError("Session not found", code=ErrorCode.SESSION_NOT_FOUND)
        return session

    async def _find(self, name: str) -> Session | None:
        """The session called ``name``: local, or made on another node (then kept here)."""
        session = self._sessions.get(name)
        if session is not None:
            return session
        record = await self._cluster.load_session(name)
        if record is None:
            return None
        session = self._sessions.get(name)  # another init may have loaded it meanwhile
        if session is None:
            session = self._sessions[name] = Session.from_record(record)
            if self.on_loaded is not None:
                self.on_loaded(session)
        return session

    def remove(self, session: Session) -> None:
        """Forget ``session``; the caller tears down its connections and messages."""
        session.dropped = True
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
