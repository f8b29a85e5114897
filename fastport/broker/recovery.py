"""Rebuild the broker's state from a store snapshot at startup.

Times come back as wall-clock milliseconds and are turned into scheduler times. Every
durable client starts offline: its messages that were sent and unacked are resent (as
redeliveries, with their attempt counts) when it resumes, the ones that were queued
follow in publish order, and its TTL runs from when it went offline (or from now, if it
was online when the broker stopped). Rows that point at nothing (a target whose message
or client is gone) are deleted.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import orjson

from fastport._speedups import Inflight
from fastport.broker.core import Broker
from fastport.broker.credentials import PasswordHash
from fastport.broker.delivery import Message
from fastport.broker.sessions import Session
from fastport.broker.subscriber import Subscriber
from fastport.config import SessionSettings
from fastport.engines.sqlite import Snapshot, SqliteStore
from fastport.protocol.frames import Publish

logger = logging.getLogger("fastport.store")


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What was read back."""

    sessions: int
    durable_clients: int
    held_messages: int
    retained: int


def restore(broker: Broker, store: SqliteStore, snapshot: Snapshot) -> RestoreReport:
    """Load ``snapshot`` into ``broker`` (which must be new and not yet serving)."""
    now_wall = int(time.time() * 1000)
    now_mono = broker.scheduler.now_ms()

    def to_mono(wall_ms: int) -> int:
        return wall_ms - now_wall + now_mono

    sessions: dict[str, Session] = {}
    for name, salt, digest, secret, stored, suspended in snapshot.sessions:
        settings = SessionSettings.from_store(stored)
        if settings.expires_at_ms is not None and settings.expires_at_ms <= now_wall:
            store.delete_session(name)
            continue
        restored = Session(name, PasswordHash(salt=salt, digest=digest), secret, settings)
        restored.suspended = suspended
        broker.sessions.restore(restored)
        sessions[name] = restored
        if settings.expires_at_ms is not None:
            broker.arm_session_expiry(restored)

    delivery = broker.delivery
    subscribers: dict[tuple[str, str], Subscriber] = {}
    for session_name, client_id, filters, offline_since in snapshot.durables:
        session = sessions.get(session_name)
        if session is None:
            continue
        subscriber = Subscriber(delivery, session, client_id, durable=True)
        subscriber.filters = dict(filters)
        for topic_filter, qos in filters.items():
            session.index.add(topic_filter, subscriber, qos)
        session.clients[client_id] = subscriber
        subscribers[(session_name, client_id)] = subscriber
        offline_wall = now_wall if offline_since is None else offline_since
        store.put_durable(session_name, client_id, subscriber.filters, offline_wall)
        delivery.arm_durable_ttl(subscriber, to_mono(offline_wall + session.settings.durable_ttl_ms))

    held: dict[tuple[str, str], Message] = {}
    for row in snapshot.messages:
        session_name, message_id, seq, topic, data, hash_, timestamp, qos, expires_at, dedupe_until = row[:10]
        delivered_to, acked = row[10:]
        session = sessions.get(session_name)
        if session is None:
            continue
        session.seq = max(session.seq, seq)
        publish = Publish(
            topic=topic, data=data or "", message_id=message_id, hash=hash_, timestamp=orjson.loads(timestamp), qos=qos
        )
        message = Message(session, publish, publish.timestamp or 0, seq, None, now_mono)
        message.expires_at_ms = None if expires_at is None else to_mono(expires_at)
        message.dedupe_until_ms = to_mono(dedupe_until)
        message.delivered_to = delivered_to
        message.acked = bool(acked)
        session.recent.remember(message)
        if data is None:
            message.frame = message.publish = None
        else:
            held[(session_name, message_id)] = message

    per_subscriber: dict[Subscriber, list[tuple[Message, int, bool]]] = defaultdict(list)
    for session_name, client_id, message_id, attempts, sent in snapshot.targets:
        client = subscribers.get((session_name, client_id))
        held_message = held.get((session_name, message_id))
        if client is None or held_message is None:
            store.delete_target(session_name, client_id, message_id)
            continue
        per_subscriber[client].append((held_message, attempts, sent))
    for subscriber, targets in per_subscriber.items():
        targets.sort(key=lambda target: target[0].seq)
        for message, attempts, sent in targets:
            message.pending += 1
            if sent:
                subscriber.inflight[message.message_id] = Inflight(message, attempts, now_mono)
            else:
                if subscriber.queue is None:
                    subscriber.queue = deque()
                subscriber.queue.append(message)
                subscriber.queued_bytes += message.size
    for message in held.values():
        if message.pending:
            message.session.live_messages += 1
        else:
            store.finish_message(message.session.name, message.message_id, message.acked)
            message.frame = message.publish = None

    retained = 0
    for session_name, topic, message_id, data, hash_, timestamp, qos in snapshot.retained:
        session = sessions.get(session_name)
        if session is None:
            continue
        stamp = orjson.loads(timestamp)
        session.retained[topic] = (
            Publish(topic=topic, data=data, message_id=message_id, hash=hash_, timestamp=stamp, qos=qos, retain=True),
            stamp,
        )
        retained += 1
    store.purge(now_wall)
    report = RestoreReport(len(sessions), len(subscribers), sum(1 for m in held.values() if m.pending), retained)
    logger.info(
        "store %s: restored %d session(s), %d durable client(s), %d held message(s), %d retained",
        store.path,
        report.sessions,
        report.durable_clients,
        report.held_messages,
        report.retained,
    )
    return report
