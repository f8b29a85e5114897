"""The persistence seam: what the broker tells a store, and what a store gives back at startup.

The broker calls its ``Journal`` unconditionally at each change a restart must see; the default
``NullJournal`` (everything in memory) does nothing and confirms at once. ``SqliteJournal``
(``fastport.engines.sqlite``) writes each call through to SQLite. What is recorded:

* sessions: created (``session_saved``), suspended or resumed, dropped;
* durable clients: their filters and online state (``durable_saved``), and when they are gone;
* accepted messages (with the payload while a durable client still needs it), finished ones;
* each durable client's delivery state of each message it holds (``target_held``/``target_done``);
* retained messages, set and cleared.

Confirm-after-write: everything the broker sends a publisher about its message goes through
``confirm(sink, frame)``, which sends once everything recorded before it is committed, so a
confirmed publish is on disk. ``load`` returns a ``Snapshot`` of broker-owned records that
``fastport.broker.recovery`` turns back into sessions, durable clients and held messages.

Times in records are wall-clock epoch milliseconds; the journal converts from scheduler time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fastport.broker.connection import Sink
    from fastport.broker.message import Message
    from fastport.broker.sessions import Session
    from fastport.protocol.frames import Publish


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as a store or another node keeps it: hashed credentials, settings, suspension."""

    name: str
    salt: bytes
    digest: bytes
    secret_digest: bytes
    settings: dict[str, Any]
    suspended: bool


@dataclass(frozen=True, slots=True)
class DurableRecord:
    """A durable client: its filters and since when it is offline (wall ms; None: it was online)."""

    session: str
    client_id: str
    filters: dict[str, int]
    offline_since: int | None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """An accepted message: its dedupe record, with its payload while a durable client holds it."""

    session: str
    message_id: str
    seq: int
    topic: str
    data: str | None
    hash: str | None
    timestamp: int | float
    qos: int
    expires_at: int | None
    dedupe_until: int
    delivered_to: int
    acked: bool


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """One durable client's delivery state of one held message (``sent``: inflight, else queued)."""

    session: str
    client_id: str
    message_id: str
    attempts: int
    sent: bool


@dataclass(frozen=True, slots=True)
class RetainedRecord:
    """The retained message of one topic."""

    session: str
    topic: str
    message_id: str
    data: str
    hash: str | None
    timestamp: int | float
    qos: int


@dataclass(slots=True)
class Snapshot:
    """Everything a journal holds, read once at startup (messages in publish order per session)."""

    sessions: list[SessionRecord] = field(default_factory=list)
    durables: list[DurableRecord] = field(default_factory=list)
    messages: list[MessageRecord] = field(default_factory=list)
    targets: list[TargetRecord] = field(default_factory=list)
    retained: list[RetainedRecord] = field(default_factory=list)


class Journal(Protocol):
    """What the broker records for a restart to see (see the module docstring)."""

    @property
    def keeps_durable_state(self) -> bool:
        """Whether durable clients' delivery state is recorded (then every delivery to one is); constant."""

    def load(self) -> Snapshot:
        """Everything recorded so far (startup only, before the broker serves)."""

    def session_saved(self, session: Session) -> None:
        """A session was created (credentials, settings, suspension)."""

    def session_suspended(self, session: Session) -> None:
        """A session was suspended or resumed (``session.suspended``)."""

    def session_dropped(self, name: str) -> None:
        """A session and everything of it are gone."""

    def durable_saved(
        self, session_name: str, client_id: str, filters: dict[str, int], offline_since: int | None
    ) -> None:
        """A durable client's filters, and since when it is offline (wall ms; None: online)."""

    def durable_forgotten(self, session_name: str, client_id: str) -> None:
        """A durable client and its delivery state are gone."""

    def message_accepted(self, message: Message, with_payload: bool) -> None:
        """A publish was accepted (``with_payload``: a durable client holds it)."""

    def message_finished(self, message: Message) -> None:
        """No durable client holds ``message`` any more: only its dedupe record stays."""

    def target_held(self, session_name: str, client_id: str, message_id: str, attempts: int, sent: bool) -> None:
        """A durable client holds a message: sent ``attempts`` times (``sent``) or queued."""

    def target_done(self, session_name: str, client_id: str, message_id: str) -> None:
        """A durable client is done with a message (acked, expired, exhausted or dropped)."""

    def retained_set(self, session: Session, publish: Publish, timestamp: int | float) -> None:
        """``publish`` is now the retained message of its topic."""

    def retained_cleared(self, session: Session, topic: str) -> None:
        """``topic`` has no retained message any more."""

    def confirm(self, sink: Sink, frame: bytes) -> None:
        """Send ``frame`` to a publisher once everything recorded before it is committed."""

    async def committed(self) -> None:
        """Return once everything recorded so far is committed."""

    async def close(self) -> None:
        """Commit what is pending and release the store."""


class NullJournal:
    """The in-memory default: records nothing, confirms at once."""

    __slots__ = ()

    @property
    def keeps_durable_state(self) -> bool:
        """Nothing is recorded."""
        return False

    def load(self) -> Snapshot:
        """Nothing was recorded."""
        return Snapshot()

    def session_saved(self, session: Session) -> None:
        """Nothing to record."""

    def session_suspended(self, session: Session) -> None:
        """Nothing to record."""

    def session_dropped(self, name: str) -> None:
        """Nothing to record."""

    def durable_saved(
        self, session_name: str, client_id: str, filters: dict[str, int], offline_since: int | None
    ) -> None:
        """Nothing to record."""

    def durable_forgotten(self, session_name: str, client_id: str) -> None:
        """Nothing to record."""

    def message_accepted(self, message: Message, with_payload: bool) -> None:
        """Nothing to record."""

    def message_finished(self, message: Message) -> None:
        """Nothing to record."""

    def target_held(self, session_name: str, client_id: str, message_id: str, attempts: int, sent: bool) -> None:
        """Nothing to record."""

    def target_done(self, session_name: str, client_id: str, message_id: str) -> None:
        """Nothing to record."""

    def retained_set(self, session: Session, publish: Publish, timestamp: int | float) -> None:
        """Nothing to record."""

    def retained_cleared(self, session: Session, topic: str) -> None:
        """Nothing to record."""

    def confirm(self, sink: Sink, frame: bytes) -> None:
        """Nothing waits for a commit: send now."""
        sink.send(frame)

    async def committed(self) -> None:
        """Nothing is pending."""

    async def close(self) -> None:
        """Nothing to release."""
