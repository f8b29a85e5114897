"""The embedded on-disk store: SQLite (stdlib ``sqlite3``) in WAL mode, written off the event loop.

``SqliteJournal`` is the broker's ``Journal`` (``fastport.broker.journal``) on this store: it
turns each recorded change into a row write. ``SqliteStore`` holds the rows and the writer.

What it keeps: sessions (hashed credentials and settings), durable clients (their filters and
when they went offline), held messages with each durable client's delivery state (sent or
queued, redelivery attempts), retained messages, and the dedupe window (one row per accepted
messageId, its payload dropped once it is no longer needed).

Writes are queued on the event loop and committed by one writer thread in groups (every
2 ms, ``group_commit_ms``, or ``GROUP_COMMIT_OPS`` operations, whichever comes first).
``after_commit(callback)`` runs ``callback`` on the loop once everything queued before it is
committed: the broker sends ``publish_response`` that way, so a confirmed publish is on disk.

Durability: ``synchronous=NORMAL`` in WAL mode survives a crash of the broker process
(``kill -9``); ``sqlite:PATH?sync=full`` also survives a power loss, at an fsync per commit.
Times are stored as wall-clock epoch milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from fastport.broker.journal import (
    DurableRecord,
    MessageRecord,
    RetainedRecord,
    SessionRecord,
    Snapshot,
    TargetRecord,
)
from fastport.errors import ConfigError

if TYPE_CHECKING:
    from fastport.broker.connection import Sink
    from fastport.broker.message import Message
    from fastport.broker.sessions import Session
    from fastport.protocol.frames import Publish

logger = logging.getLogger("fastport.store")

GROUP_COMMIT_S: Final = 0.002
GROUP_COMMIT_OPS: Final = 2000
SCHEMA_VERSION: Final = "1"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY, salt BLOB NOT NULL, digest BLOB NOT NULL, secret BLOB NOT NULL,
    settings TEXT NOT NULL, suspended INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS durables (
    session TEXT NOT NULL, client_id TEXT NOT NULL, filters TEXT NOT NULL, offline_since INTEGER,
    PRIMARY KEY (session, client_id));
CREATE TABLE IF NOT EXISTS messages (
    session TEXT NOT NULL, message_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL,
    data TEXT, hash TEXT, timestamp TEXT NOT NULL, qos INTEGER NOT NULL, expires_at INTEGER,
    dedupe_until INTEGER NOT NULL, delivered_to INTEGER NOT NULL, acked INTEGER NOT NULL,
    PRIMARY KEY (session, message_id));
CREATE INDEX IF NOT EXISTS messages_by_dedupe ON messages (dedupe_until);
CREATE TABLE IF NOT EXISTS targets (
    session TEXT NOT NULL, client_id TEXT NOT NULL, message_id TEXT NOT NULL,
    attempts INTEGER NOT NULL, sent INTEGER NOT NULL,
    PRIMARY KEY (session, client_id, message_id));
CREATE TABLE IF NOT EXISTS retained (
    session TEXT NOT NULL, topic TEXT NOT NULL, message_id TEXT NOT NULL, data TEXT NOT NULL,
    hash TEXT, timestamp TEXT NOT NULL, qos INTEGER NOT NULL,
    PRIMARY KEY (session, topic));
"""


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """What a ``sqlite:PATH?option=value&...`` URL says."""

    path: Path
    full_sync: bool = False
    group_commit_s: float = GROUP_COMMIT_S


def parse_store_url(url: str) -> StoreOptions:
    """Parse ``sqlite:PATH`` with options ``sync=full|normal`` and ``group_commit_ms=1..1000``.

    Raises:
        ConfigError: not a store URL fastport knows.
    """
    scheme, _, rest = url.partition(":")
    path, _, query = rest.partition("?")
    if scheme != "sqlite" or not path:
        raise ConfigError(f"store must be sqlite:PATH, got {url!r}")
    full_sync = False
    group_commit_s = GROUP_COMMIT_S
    for option in filter(None, query.split("&")):
        name, _, value = option.partition("=")
        if name == "sync" and value in ("full", "normal"):
            full_sync = value == "full"
        elif name == "group_commit_ms" and value.isdigit() and 1 <= int(value) <= 1000:
            group_commit_s = int(value) / 1000
        else:
            raise ConfigError(f"unknown store option {option!r}: use sync=full|normal or group_commit_ms=1..1000")
    return StoreOptions(Path(path), full_sync, group_commit_s)


class SqliteStore:
    """The SQLite store: synchronous reads at startup, grouped writes in a writer thread."""

    def __init__(self, connection: sqlite3.Connection, path: Path, group_commit_s: float = GROUP_COMMIT_S) -> None:
        self.path = path
        self._group_commit_s = group_commit_s
        self._db = connection
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastport-store")
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._callbacks: list[Callable[[], None]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = 0
        self._closed = False
        self.commits = 0
        self.failures = 0

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, url: str) -> SqliteStore:
        """Open (or create) the database of ``url`` and check that it is usable.

        Raises:
            ConfigError: the path is unusable, or the file is not a fastport database, is
                corrupt, or comes from a newer fastport.
        """
        options = parse_store_url(url)
        path = options.path
        if not path.parent.is_dir():
            # A mistyped path must not start an empty broker: the directory has to exist already.
            raise ConfigError(f"cannot open store {path}: directory {path.parent} does not exist")
        # The database and its -wal and -shm files hold password hashes: owner only.
        old_umask = os.umask(0o077)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            os.umask(old_umask)
            raise ConfigError(f"cannot open store {path}: {exc}") from None
        try:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA schema_version").fetchone()  # makes SQLite create the -wal and -shm files
            finally:
                os.umask(old_umask)
            for suffix in ("-wal", "-shm"):
                sidecar = path.with_name(path.name + suffix)
                if sidecar.exists():
                    sidecar.chmod(0o600)
            db.execute(f"PRAGMA synchronous={'FULL' if options.full_sync else 'NORMAL'}")
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise ConfigError(f"store {path} has schema {row[0]}; this fastport reads {SCHEMA_VERSION}")
        except OSError as exc:
            db.close()
            raise ConfigError(f"cannot open store {path}: {exc}") from None
        except sqlite3.Error as exc:
            db.close()
            raise ConfigError(f"store {path} is corrupt or not a fastport database: {exc}") from None
        return cls(db, path, options.group_commit_s)

    def load(self, now_wall_ms: int) -> Snapshot:
        """Read everything (startup only, before the broker serves), after forgetting dedupe records
        past their window whose payload is gone."""
        db = self._db
        db.execute("DELETE FROM messages WHERE dedupe_until < ? AND data IS NULL", (now_wall_ms,))
        snapshot = Snapshot()
        for name, salt, digest, secret, settings, suspended in db.execute(
            "SELECT name, salt, digest, secret, settings, suspended FROM sessions ORDER BY name"
        ):
            snapshot.sessions.append(SessionRecord(name, salt, digest, secret, orjson.loads(settings), bool(suspended)))
        for session, client_id, filters, offline_since in db.execute(
            "SELECT session, client_id, filters, offline_since FROM durables ORDER BY session, client_id"
        ):
            snapshot.durables.append(DurableRecord(session, client_id, orjson.loads(filters), offline_since))
        for row in db.execute(
            "SELECT session, message_id, seq, topic, data, hash, timestamp, qos, expires_at, dedupe_until,"
            " delivered_to, acked FROM messages ORDER BY session, seq"
        ):
            session, message_id, seq, topic, data, hash_, timestamp, qos, expires_at, dedupe_until = row[:10]
            snapshot.messages.append(
                MessageRecord(
                    session,
                    message_id,
                    seq,
                    topic,
                    data,
                    hash_,
                    orjson.loads(timestamp),
                    qos,
                    expires_at,
                    dedupe_until,
                    row[10],
                    bool(row[11]),
                )
            )
        for session, client_id, message_id, attempts, sent in db.execute(
            "SELECT session, client_id, message_id, attempts, sent FROM targets"
        ):
            snapshot.targets.append(TargetRecord(session, client_id, message_id, attempts, bool(sent)))
        for session, topic, message_id, data, hash_, timestamp, qos in db.execute(
            "SELECT session, topic, message_id, data, hash, timestamp, qos FROM retained ORDER BY rowid"
        ):
            snapshot.retained.append(
                RetainedRecord(session, topic, message_id, data, hash_, orjson.loads(timestamp), qos)
            )
        return snapshot

    # ---------------------------------------------------------------- writes

    def _queue(self, sql: str, params: tuple[Any, ...]) -> None:
        self._pending.append((sql, params))
        if self._flush_handle is None:
            loop = self._loop = self._loop or asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self._group_commit_s, self._flush)
        elif len(self._pending) >= GROUP_COMMIT_OPS:
            self._flush_handle.cancel()
            self._flush()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop once every write queued so far is committed."""
        if not self._pending and self._flush_handle is None and not self._writing:
            callback()
            return
        # Groups commit in order on the one writer thread, so a callback riding with the next
        # group (even an empty one) runs after everything queued before it.
        self._callbacks.append(callback)
        if self._flush_handle is None:
            loop = self._loop = self._loop or asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self._group_commit_s, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self._pending = self._pending, []
        callbacks, self._callbacks = self._callbacks, []
        loop = self._loop
        assert loop is not None
        self._writing += 1
        future = loop.run_in_executor(self._executor, self._write, batch)
        future.add_done_callback(lambda done: self._committed(done, callbacks))

    def _write(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        if not batch:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            start = 0
            while start < len(batch):
                sql = batch[start][0]
                end = start
                while end < len(batch) and batch[end][0] == sql:
                    end += 1
                db.executemany(sql, [params for _, params in batch[start:end]])
                start = end
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _committed(self, done: asyncio.Future[None], callbacks: list[Callable[[], None]]) -> None:
        self._writing -= 1
        if done.exception() is not None:
            # Nothing of this group is confirmed: its publishers get no publish_response and retry.
            self.failures += 1
            logger.error("store write failed, %d confirmation(s) withheld: %s", len(callbacks), done.exception())
            return
        self.commits += 1
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("after-commit callback failed")

    async def close(self) -> None:
        """Commit what is queued, then close the database."""
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        if batch:
            await loop.run_in_executor(self._executor, self._write, batch)
        await loop.run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)

    # ----------------------------------------------------------- the operations

    def put_session(
        self, name: str, salt: bytes, digest: bytes, secret: bytes, settings: dict[str, Any], suspended: bool
    ) -> None:
        """Create or replace a session."""
        self._queue(
            "INSERT OR REPLACE INTO sessions (name, salt, digest, secret, settings, suspended)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, salt, digest, secret, orjson.dumps(settings).decode(), int(suspended)),
        )

    def set_suspended(self, name: str, suspended: bool) -> None:
        """Record a suspend or resume."""
        self._queue("UPDATE sessions SET suspended = ? WHERE name = ?", (int(suspended), name))

    def delete_session(self, name: str) -> None:
        """Forget a session and everything of it."""
        for table in ("targets", "retained", "messages", "durables"):
            self._queue(f"DELETE FROM {table} WHERE session = ?", (name,))
        self._queue("DELETE FROM sessions WHERE name = ?", (name,))

    def put_durable(self, session: str, client_id: str, filters: dict[str, int], offline_since: int | None) -> None:
        """Create or replace a durable client's filters and offline time (wall ms, None: online)."""
        self._queue(
            "INSERT OR REPLACE INTO durables (session, client_id, filters, offline_since) VALUES (?, ?, ?, ?)",
            (session, client_id, orjson.dumps(filters).decode(), offline_since),
        )

    def delete_durable(self, session: str, client_id: str) -> None:
        """Forget a durable client and its delivery state."""
        self._queue("DELETE FROM targets WHERE session = ? AND client_id = ?", (session, client_id))
        self._queue("DELETE FROM durables WHERE session = ? AND client_id = ?", (session, client_id))

    def put_message(
        self,
        session: str,
        message_id: str,
        seq: int,
        topic: str,
        data: str | None,
        hash_: str | None,
        timestamp: int | float,
        qos: int,
        expires_at: int | None,
        dedupe_until: int,
        delivered_to: int,
    ) -> None:
        """Record an accepted publish (``data`` only while a durable client still needs it)."""
        self._queue(
            "INSERT OR REPLACE INTO messages (session, message_id, seq, topic, data, hash, timestamp, qos,"
            " expires_at, dedupe_until, delivered_to, acked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                session,
                message_id,
                seq,
                topic,
                data,
                hash_,
                orjson.dumps(timestamp).decode(),
                qos,
                expires_at,
                dedupe_until,
                delivered_to,
            ),
        )

    def finish_message(self, session: str, message_id: str, acked: bool) -> None:
        """A message no durable client needs any more: keep only its dedupe record."""
        self._queue(
            "UPDATE messages SET data = NULL, acked = ? WHERE session = ? AND message_id = ?",
            (int(acked), session, message_id),
        )

    def put_target(self, session: str, client_id: str, message_id: str, attempts: int, sent: bool) -> None:
        """Create or update one durable client's delivery state of one message."""
        self._queue(
            "INSERT OR REPLACE INTO targets (session, client_id, message_id, attempts, sent) VALUES (?, ?, ?, ?, ?)",
            (session, client_id, message_id, attempts, int(sent)),
        )

    def delete_target(self, session: str, client_id: str, message_id: str) -> None:
        """One durable client is done with one message."""
        self._queue(
            "DELETE FROM targets WHERE session = ? AND client_id = ? AND message_id = ?",
            (session, client_id, message_id),
        )

    def put_retained(
        self, session: str, topic: str, message_id: str, data: str, hash_: str | None, timestamp: int | float, qos: int
    ) -> None:
        """Set the retained message of a topic."""
        self._queue(
            "INSERT OR REPLACE INTO retained (session, topic, message_id, data, hash, timestamp, qos)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session, topic, message_id, data, hash_, orjson.dumps(timestamp).decode(), qos),
        )

    def delete_retained(self, session: str, topic: str) -> None:
        """Clear the retained message of a topic."""
        self._queue("DELETE FROM retained WHERE session = ? AND topic = ?", (session, topic))


class SqliteJournal:
    """The broker's ``Journal`` on a ``SqliteStore``: every recorded change becomes a queued row write.

    Args:
        store: the open store.
        clock: the scheduler's clock (the loop's ``time``), to turn scheduler times into wall-clock ones.
    """

    __slots__ = ("_clock", "store")

    def __init__(self, store: SqliteStore, clock: Callable[[], float]) -> None:
        self.store = store
        self._clock = clock

    @property
    def keeps_durable_state(self) -> bool:
        """Every delivery to a durable client is recorded."""
        return True

    def _wall_ms(self, scheduler_ms: int) -> int:
        """Wall-clock epoch ms of a scheduler time (what the store keeps)."""
        return scheduler_ms + int(time.time() * 1000) - int(self._clock() * 1000)

    def load(self) -> Snapshot:
        """Everything the store holds."""
        return self.store.load(int(time.time() * 1000))

    def session_saved(self, session: Session) -> None:
        """Write a new session."""
        record = session.record()
        self.store.put_session(
            record.name, record.salt, record.digest, record.secret_digest, record.settings, record.suspended
        )

    def session_suspended(self, session: Session) -> None:
        """Write a suspension or resumption."""
        self.store.set_suspended(session.name, session.suspended)

    def session_dropped(self, name: str) -> None:
        """Delete a session and everything of it."""
        self.store.delete_session(name)

    def durable_saved(
        self, session_name: str, client_id: str, filters: dict[str, int], offline_since: int | None
    ) -> None:
        """Write a durable client's filters and offline time."""
        self.store.put_durable(session_name, client_id, filters, offline_since)

    def durable_forgotten(self, session_name: str, client_id: str) -> None:
        """Delete a durable client and its delivery state."""
        self.store.delete_durable(session_name, client_id)

    def message_accepted(self, message: Message, with_payload: bool) -> None:
        """Write a message's dedupe record, with its payload when a durable client holds it."""
        publish = message.publish if with_payload else None
        self.store.put_message(
            message.session.name,
            message.message_id,
            message.seq,
            message.topic,
            None if publish is None else publish.data,
            None if publish is None else publish.hash,
            message.timestamp,
            message.qos,
            None if message.expires_at_ms is None else self._wall_ms(message.expires_at_ms),
            self._wall_ms(message.dedupe_until_ms),
            message.delivered_to,
        )

    def message_finished(self, message: Message) -> None:
        """Drop a finished message's payload."""
        self.store.finish_message(message.session.name, message.message_id, message.acked)

    def target_held(self, session_name: str, client_id: str, message_id: str, attempts: int, sent: bool) -> None:
        """Write one durable client's delivery state of one message."""
        self.store.put_target(session_name, client_id, message_id, attempts, sent)

    def target_done(self, session_name: str, client_id: str, message_id: str) -> None:
        """Delete one durable client's delivery state of one message."""
        self.store.delete_target(session_name, client_id, message_id)

    def retained_set(self, session: Session, publish: Publish, timestamp: int | float) -> None:
        """Write a topic's retained message."""
        self.store.put_retained(
            session.name, publish.topic, publish.message_id, publish.data, publish.hash, timestamp, publish.qos
        )

    def retained_cleared(self, session: Session, topic: str) -> None:
        """Delete a topic's retained message."""
        self.store.delete_retained(session.name, topic)

    def confirm(self, sink: Sink, frame: bytes) -> None:
        """Send ``frame`` once everything written before it is committed (if the socket is still open)."""

        def send() -> None:
            if sink.is_open:
                sink.send(frame)

        self.store.after_commit(send)

    async def committed(self) -> None:
        """Wait until everything written so far is committed."""
        done = asyncio.get_running_loop().create_future()

        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        self.store.after_commit(resolve)
        await done

    async def close(self) -> None:
        """Commit what is queued and close the database."""
        await self.store.close()
