"""The embedded on-disk store: SQLite (stdlib ``sqlite3``) in WAL mode, written off the event loop.

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
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from fastport.errors import ConfigError

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


@dataclass(slots=True)
class Snapshot:
    """Everything the store holds, read once at startup (rows as tuples, in a stable order)."""

    sessions: list[tuple[str, bytes, bytes, bytes, dict[str, Any], bool]] = field(default_factory=list)
    durables: list[tuple[str, str, dict[str, int], int | None]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    targets: list[tuple[str, str, str, int, bool]] = field(default_factory=list)
    retained: list[tuple[Any, ...]] = field(default_factory=list)


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open store {path}: {exc}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
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
        except sqlite3.Error as exc:
            db.close()
            raise ConfigError(f"store {path} is corrupt or not a fastport database: {exc}") from None
        return cls(db, path, options.group_commit_s)

    def load(self) -> Snapshot:
        """Read everything (startup only, before the broker serves)."""
        snapshot = Snapshot()
        db = self._db
        for name, salt, digest, secret, settings, suspended in db.execute(
            "SELECT name, salt, digest, secret, settings, suspended FROM sessions ORDER BY name"
        ):
            snapshot.sessions.append((name, salt, digest, secret, orjson.loads(settings), bool(suspended)))
        for session, client_id, filters, offline_since in db.execute(
            "SELECT session, client_id, filters, offline_since FROM durables ORDER BY session, client_id"
        ):
            snapshot.durables.append((session, client_id, orjson.loads(filters), offline_since))
        snapshot.messages = db.execute(
            "SELECT session, message_id, seq, topic, data, hash, timestamp, qos, expires_at, dedupe_until,"
            " delivered_to, acked FROM messages ORDER BY session, seq"
        ).fetchall()
        for session, client_id, message_id, attempts, sent in db.execute(
            "SELECT session, client_id, message_id, attempts, sent FROM targets"
        ):
            snapshot.targets.append((session, client_id, message_id, attempts, bool(sent)))
        snapshot.retained = db.execute(
            "SELECT session, topic, message_id, data, hash, timestamp, qos FROM retained ORDER BY rowid"
        ).fetchall()
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

    def purge(self, now_wall_ms: int) -> None:
        """Forget dedupe records past their window whose payload is gone."""
        self._queue("DELETE FROM messages WHERE dedupe_until < ? AND data IS NULL", (now_wall_ms,))
