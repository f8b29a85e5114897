"""Rebuild the broker's state from the journal's snapshot at startup.

Times come back as wall-clock milliseconds and are turned into scheduler times. Every
durable client starts offline: its messages that were sent and unacked are resent (as
redeliveries, with their attempt counts) when it resumes, the ones that were queued
follow in publish order, and its TTL runs from when it went offline (or from now, if it
was online when the broker stopped). Records that point at nothing (a delivery state whose
message or client is gone) are deleted; so are expired sessions.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from fastport.broker.core import Broker
from fastport.broker.journal import Snapshot
from fastport.broker.message import Message
from fastport.broker.sessions import Session
from fastport.protocol.frames import Publish


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What was read back."""

    sessions: int
    durable_clients: int
    held_messages: int
    retained: int


def restore(broker: Broker, snapshot: Snapshot) -> RestoreReport:
    """Load ``snapshot`` into ``broker`` (which must be new and not yet serving)."""
    journal = broker.journal
    now_wall = int(time.time() * 1000)
    now_mono = broker.scheduler.now_ms()

    def to_mono(wall_ms: int) -> int:
        return wall_ms - now_wall + now_mono

    sessions: dict[str, Session] = {}
    for record in snapshot.sessions:
        restored = Session.from_record(record)
        expires_at = restored.settings.expires_at_ms
        if expires_at is not None and expires_at <= now_wall:
            journal.session_dropped(record.name)
            continue
        broker.sessions.restore(restored)
        sessions[record.name] = restored
        broker.admin.arm_expiry(restored)

    held: dict[tuple[str, str], Message] = {}
    for row in snapshot.messages:
        session = sessions.get(row.session)
        if session is None:
            continue
        session.seq = max(session.seq, row.seq)
        publish = Publish(
            topic=row.topic,
            data=row.data or "",
            message_id=row.message_id,
            hash=row.hash,
            timestamp=row.timestamp,
            qos=row.qos,
        )
        message = Message(session, publish, row.timestamp or 0, row.seq, None, now_mono)
        message.expires_at_ms = None if row.expires_at is None else to_mono(row.expires_at)
        message.dedupe_until_ms = to_mono(row.dedupe_until)
        message.delivered_to = row.delivered_to
        message.acked = row.acked
        session.dedupe.remember(message)
        if row.data is None:
            message.drop_payload()
        else:
            held[(row.session, row.message_id)] = message

    durable_keys = {
        (durable.session, durable.client_id) for durable in snapshot.durables if durable.session in sessions
    }
    per_client: dict[tuple[str, str], list[tuple[Message, int, bool]]] = defaultdict(list)
    for target in snapshot.targets:
        key = (target.session, target.client_id)
        held_message = held.get((target.session, target.message_id))
        if key not in durable_keys or held_message is None:
            journal.target_done(target.session, target.client_id, target.message_id)
            continue
        per_client[key].append((held_message, target.attempts, target.sent))

    durable_clients = 0
    for durable in snapshot.durables:
        session = sessions.get(durable.session)
        if session is None:
            continue
        holding = sorted(per_client.get((durable.session, durable.client_id), ()), key=lambda item: item[0].seq)
        subscriber = broker.subscribers.rehydrate(session, durable.client_id, durable.filters, holding)
        offline_wall = now_wall if durable.offline_since is None else durable.offline_since
        journal.durable_saved(durable.session, durable.client_id, subscriber.filters, offline_wall)
        broker.subscribers.arm_ttl(subscriber, to_mono(offline_wall + session.settings.durable_ttl_ms))
        durable_clients += 1

    for message in held.values():
        if not message.pending:
            journal.message_finished(message)
            message.drop_payload()

    retained = 0
    for kept in snapshot.retained:
        session = sessions.get(kept.session)
        if session is None:
            continue
        session.retained[kept.topic] = (
            Publish(
                topic=kept.topic,
                data=kept.data,
                message_id=kept.message_id,
                hash=kept.hash,
                timestamp=kept.timestamp,
                qos=kept.qos,
                retain=True,
            ),
            kept.timestamp,
        )
        retained += 1
    return RestoreReport(len(sessions), durable_clients, sum(1 for m in held.values() if m.pending), retained)
