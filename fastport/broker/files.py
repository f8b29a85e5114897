"""The file relay: ``init_file`` ... binary chunks ... ``end_file``, forwarded to a topic's subscribers.

A file transfer is opened by ``init_file`` (topic and fileId), carried by binary chunks
(``0x02 | fileId (36 ASCII bytes) | index (uint32 BE) | IV + ciphertext``) and closed by
``end_file``. Each frame goes unchanged to the other open connections subscribed to the topic,
now: nothing is held, retried or acked. A connection has at most ``MAX_OPEN_FILES`` transfers
open; a chunk or ``end_file`` of a transfer not opened is refused (2005), a binary frame that is
not a chunk too (1007).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from fastport.errors import ErrorCode, LimitExceeded, ProtocolError
from fastport.protocol.topics import validate_topic

if TYPE_CHECKING:
    from fastport.broker.connection import Connection
    from fastport.broker.sessions import Session
    from fastport.config import BrokerLimits
    from fastport.protocol.frames import FileControl

#: File transfers (``init_file`` ... ``end_file``) open at once on one connection.
MAX_OPEN_FILES: Final = 64
#: First byte of a binary file chunk.
FILE_CHUNK_MARKER: Final = 0x02
#: Bytes of the fileId in a chunk header.
FILE_ID_LENGTH: Final = 36
#: Bytes before a chunk's IV and ciphertext: marker, fileId, index.
FILE_CHUNK_HEADER: Final = 1 + FILE_ID_LENGTH + 4


class FileRelay:
    """Forwards file transfers of open connections to their topics' subscribers.

    Args:
        limits: the broker's limits (topic length and depth).
    """

    __slots__ = ("_limits",)

    def __init__(self, limits: BrokerLimits) -> None:
        self._limits = limits

    def on_control(self, conn: Connection, session: Session, frame: FileControl) -> None:
        """Open (``init_file``) or close (``end_file``) a transfer, and forward the frame.

        Raises:
            ProtocolError: a bad topic, or ``end_file`` of a transfer not opened.
            LimitExceeded: too many transfers open on this connection.
        """
        validate_topic(frame.topic, max_length=self._limits.max_topic_length, max_depth=self._limits.max_topic_depth)
        files = conn.files
        if frame.kind == "init_file":
            if files is None:
                files = conn.files = {}
            if frame.file_id not in files and len(files) >= MAX_OPEN_FILES:
                raise LimitExceeded(f"too many open file transfers: {MAX_OPEN_FILES}", code=ErrorCode.TOO_MANY_FILES)
            files[frame.file_id] = frame.topic
        elif files is None or files.pop(frame.file_id, None) is None:
            raise ProtocolError("end_file without init_file", code=ErrorCode.FILE_NOT_OPEN, field="fileId")
        for target in _others(session, frame.topic, conn):
            target.sink.send(frame.raw)

    def on_chunk(self, conn: Connection, session: Session, payload: bytes) -> None:
        """Forward one binary chunk of an open transfer unchanged.

        Raises:
            ProtocolError: not a file chunk, or a chunk of a transfer not opened.
        """
        if len(payload) < FILE_CHUNK_HEADER or payload[0] != FILE_CHUNK_MARKER:
            raise ProtocolError("invalid file chunk", code=ErrorCode.INVALID_FILE_CHUNK)
        file_id = payload[1 : 1 + FILE_ID_LENGTH].decode("latin-1")
        topic = conn.files.get(file_id) if conn.files else None
        if topic is None:
            raise ProtocolError("file chunk without init_file", code=ErrorCode.FILE_NOT_OPEN)
        for target in _others(session, topic, conn):
            target.sink.send_binary(payload)


def _others(session: Session, topic: str, conn: Connection) -> list[Connection]:
    """The open connections, other than ``conn``, subscribed to ``topic``."""
    targets = []
    for subscriber in session.index.match(topic):
        target = subscriber.connection
        if target is not None and target is not conn and target.sink.is_open:
            targets.append(target)
    return targets
