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
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import orjson

from fastport.broker import credentials
from fastport.broker.dedupe import DedupeWindow
from fastport.broker.index import SubscriberIndex
from fastport.config import SessionSettings
from fastport.errors import AuthError, ErrorCode, SessionError

if TYPE_CHECKING:
    from fastport.broker.connection import Connection
    from fastport.broker.subscriber import Subscriber
    from fastport.engines.redis import RedisEngine
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
        "recent",
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
        self.recent = DedupeWindow()
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

    def __repr__(self) -> str:
        return f"<Session {self.name!r} connections={len(self.connections)} live={self.live_messages}>"


def _engine_fields(session: Session) -> dict[str, bytes]:
    password = session.password_hash
    return {
        "salt": password.salt,
        "digest": password.digest,
        "secret": session.secret_digest,
        "settings": orjson.dumps(session.settings.to_store()),
        "suspended": b"1" if session.suspended else b"0",
    }


class SessionRegistry:
    """All sessions of one broker process, by name."""

    __slots__ = ("_sessions", "_reserved", "_cache", "engine", "on_loaded")

    def __init__(self, engine: RedisEngine | None = None) -> None:
        self._sessions: dict[str, Session] = {}
        self._reserved: set[str] = set()
        self._cache = credentials.VerifiedCache()
        #: With scale-out, sessions made on other nodes are looked up here.
        self.engine = engine
        #: Called with each session loaded from the engine (to arm its expiry).
        self.on_loaded: Callable[[Session], None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self):  # type: ignore[no-untyped-def]
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
            if self.engine is not None and not await self.engine.create_session(name, _engine_fields(session)):
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

    async def _find(self, name: str) -> Session | None:
        """The session called ``name``: local, or made on another node (then kept here)."""
        session = self._sessions.get(name)
        if session is not None or self.engine is None:
            return session
        fields = await self.engine.load_session(name)
        if fields is None:
            return None
        session = self._sessions.get(name)  # another init may have loaded it meanwhile
        if session is None:
            session = Session(
                name,
                credentials.PasswordHash(salt=fields[b"salt"], digest=fields[b"digest"]),
                fields[b"secret"],
                SessionSettings.from_store(orjson.loads(fields[b"settings"])),
            )
            session.suspended = fields.get(b"suspended") == b"1"
            self._sessions[name] = session
            if self.on_loaded is not None:
                self.on_loaded(session)
        return session

    def remove(self, session: Session) -> None:
        """Forget ``session``; the caller tears down its connections and messages."""
        session.dropped = True
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
