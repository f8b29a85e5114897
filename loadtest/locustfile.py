"""Locust load test for a fastport broker over wss:// (the fastPort JSON protocol, docs/protocol.md).

Two kinds of user share one session and topic tree:

- ``Subscriber`` connects, sends ``init``, subscribes to ``<topic>/#`` and acks every ``message`` it gets.
  Each delivery is a locust request ``WSS deliver`` (``deliver retry`` for redeliveries) whose response time
  is the publish-to-delivery latency, taken from the send time the publisher wrote into ``data``.
- ``Publisher`` connects, sends ``init`` and publishes to ``<topic>/<n>`` at ``--fastport-rate`` messages per
  second. ``WSS publish`` is the time to ``publish_response``; ``WSS ack_received`` is the full acknowledged
  round trip (publish -> delivery -> subscriber's ack -> ``ack_received``).

Connection set-up (``WSS connect``: TCP + TLS + WebSocket handshake) and ``WSS init`` / ``WSS subscribe`` are
requests too. Error frames, failed answers, ack timeouts and unexpected disconnects are failures.
Publisher and subscriber run on the same host, so one clock timestamps both ends.

Run it (see loadtest/README.md)::

    locust -f loadtest/locustfile.py --headless -u 20 -r 10 -t 60s -H wss://127.0.0.1:3443/ \\
        --fastport-session loadtest --fastport-password pw --fastport-ca cert.pem

websocket-client is blocking; locust's gevent monkey-patching makes it cooperative.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import ssl
import time
import uuid
from typing import Any

import gevent
import websocket
from locust import User, constant, events, task
from locust.exception import StopUser

_publisher_numbers = itertools.count(1)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("fastport")
    group.add_argument(
        "--fastport-session",
        env_var="FASTPORT_SESSION",
        default="loadtest",
        help="session (tenant) name; create it first with POST /api/createSession",
    )
    group.add_argument(
        "--fastport-password", env_var="FASTPORT_PASSWORD", default="loadtest", help="the session's password"
    )
    group.add_argument(
        "--fastport-ca",
        env_var="FASTPORT_CA",
        default="",
        help="CA file to verify the broker with (the self-signed cert.pem); empty: system CAs",
    )
    group.add_argument(
        "--fastport-insecure",
        env_var="FASTPORT_INSECURE",
        action="store_true",
        default=False,
        help="do not verify the broker's certificate",
    )
    group.add_argument(
        "--fastport-topic",
        env_var="FASTPORT_TOPIC",
        default="loadtest",
        help="topic prefix: publishers use PREFIX/<n>, subscribers PREFIX/#",
    )
    group.add_argument(
        "--fastport-rate",
        env_var="FASTPORT_RATE",
        type=float,
        default=10.0,
        help="publishes per second per publisher (default 10)",
    )
    group.add_argument(
        "--fastport-payload",
        env_var="FASTPORT_PAYLOAD",
        type=int,
        default=256,
        help="size of the data field in bytes (default 256)",
    )
    group.add_argument(
        "--fastport-ack-timeout",
        env_var="FASTPORT_ACK_TIMEOUT",
        type=float,
        default=10.0,
        help="seconds a publisher waits for ack_received before counting a failure",
    )


class FastportUser(User):
    """Common part: one wss:// connection, a reader greenlet, and locust request events."""

    abstract = True
    host = "wss://127.0.0.1:3000/"
    wait_time = constant(1)

    def on_start(self) -> None:
        self.opts = self.environment.parsed_options
        self._running = True
        self._reader: gevent.Greenlet | None = None
        self.ws = self._connect()
        self._request(
            "init",
            {"type": "init", "sessionName": self.opts.fastport_session, "password": self.opts.fastport_password},
            "init_response",
        )

    def on_stop(self) -> None:
        self._running = False
        with contextlib.suppress(Exception):  # the socket may already be gone
            self.ws.close(timeout=1)
        if self._reader is not None:
            self._reader.kill(block=False)

    # -- events ---------------------------------------------------------------------------------------------

    def fire(self, name: str, started: float, length: int = 0, exception: BaseException | None = None) -> None:
        """Report one request to locust; ``started`` is a time.time() value, the response time is in ms."""
        self.environment.events.request.fire(
            request_type="WSS",
            name=name,
            response_time=(time.time() - started) * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )

    # -- connection -----------------------------------------------------------------------------------------

    def _connect(self) -> websocket.WebSocket:
        if self.opts.fastport_insecure:
            sslopt: dict[str, Any] = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
        elif self.opts.fastport_ca:
            sslopt = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": self.opts.fastport_ca}
        else:
            sslopt = {}
        started = time.time()
        ws = websocket.WebSocket(sslopt=sslopt, enable_multithread=True)
        try:
            ws.connect(self.host, timeout=10)
        except Exception as exc:
            self.fire("connect", started, exception=exc)
            raise StopUser() from exc
        self.fire("connect", started)
        return ws

    def _send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame, separators=(",", ":")))

    def _recv(self) -> dict[str, Any] | None:
        """The next text frame as a dict, or None for any other opcode."""
        opcode, payload = self.ws.recv_data()
        if opcode != websocket.ABNF.OPCODE_TEXT:
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise websocket.WebSocketConnectionClosedException("closed by the broker")
            return None
        frame = json.loads(payload)
        return frame if isinstance(frame, dict) else None

    def _request(self, name: str, frame: dict[str, Any], answer: str) -> dict[str, Any]:
        """Send ``frame`` and read (before the reader greenlet runs) until its ``answer`` type arrives."""
        started = time.time()
        self._send(frame)
        deadline = started + 10
        try:
            self.ws.settimeout(10)
            while time.time() < deadline:
                response = self._recv()
                if response is not None and response.get("type") == answer:
                    break
            else:
                raise TimeoutError(f"no {answer} within 10 s")
        except Exception as exc:
            self.fire(name, started, exception=exc)
            raise StopUser() from exc
        finally:
            self.ws.settimeout(None)
        if response.get("success") is not True:
            self.fire(name, started, exception=RuntimeError(f"{answer}: {response.get('error')}"))
            raise StopUser()
        self.fire(name, started)
        return response

    def start_reader(self) -> None:
        self._reader = gevent.spawn(self._read_loop)

    def _read_loop(self) -> None:
        while self._running:
            try:
                frame = self._recv()
            except Exception as exc:  # noqa: BLE001 - a disconnect while running is a failure
                if self._running:
                    self.fire("connection", time.time(), exception=exc)
                return
            if frame is None:
                continue
            if frame.get("type") == "error":
                self.fire(
                    f"error {frame.get('code')}",
                    time.time(),
                    exception=RuntimeError(f"error frame: {frame.get('error')}"),
                )
                continue
            self.on_frame(frame)

    def on_frame(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError


class Subscriber(FastportUser):
    """Subscribes to every publisher's topic and acks every message; reports publish-to-delivery latency."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        topic_filter = f"{self.opts.fastport_topic}/#"
        self._request("subscribe", {"type": "subscribe", "topic": topic_filter}, "subscribe_response")
        self.start_reader()

    def on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != "message":
            return
        data = frame.get("data", "")
        try:
            sent = float(data.split("|", 1)[0])
        except (AttributeError, ValueError):
            self.fire("deliver", time.time(), exception=ValueError("message without a send time"))
            return
        self.fire("deliver retry" if frame.get("retry") else "deliver", sent, len(data))
        self._send({"type": "ack", "messageId": frame["messageId"], "topic": frame.get("topic")})

    @task
    def idle(self) -> None:
        """Deliveries arrive on the reader greenlet; the task only keeps the user alive."""


class Publisher(FastportUser):
    """Publishes at a fixed rate; reports publish_response and ack_received round trips."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self.topic = f"{self.opts.fastport_topic}/{next(_publisher_numbers)}"
        self.padding = "x" * max(0, self.opts.fastport_payload - 18)
        self._unanswered: dict[str, float] = {}  # messageId -> send time, until publish_response
        self._unacked: dict[str, float] = {}  # messageId -> send time, until ack_received
        self.start_reader()

    def wait_time(self) -> float:  # type: ignore[override]
        return 1.0 / self.opts.fastport_rate

    @task
    def publish(self) -> None:
        self._expire(time.time())
        message_id = uuid.uuid4().hex
        started = time.time()
        self._unanswered[message_id] = started
        self._unacked[message_id] = started
        self._send(
            {
                "type": "publish",
                "topic": self.topic,
                "data": f"{started:.6f}|{self.padding}",
                "messageId": message_id,
                "timestamp": int(started * 1000),
            }
        )

    def _expire(self, now: float) -> None:
        """Count answers that did not come within the ack timeout as failures."""
        limit = now - self.opts.fastport_ack_timeout
        for pending, name in ((self._unanswered, "publish"), (self._unacked, "ack_received")):
            late = [message_id for message_id, started in pending.items() if started < limit]
            for message_id in late:
                started = pending.pop(message_id)
                self.fire(name, started, exception=TimeoutError(f"no {name} within the ack timeout"))

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        message_id = frame.get("messageId")
        if kind == "publish_response":
            started = self._unanswered.pop(message_id, None)
            if started is None:
                return
            if frame.get("success") is not True:
                self._unacked.pop(message_id, None)
                self.fire("publish", started, exception=RuntimeError(f"publish refused: {frame.get('error')}"))
                return
            self.fire("publish", started)
            if not frame.get("deliveredTo"):
                self._unacked.pop(message_id, None)  # nobody subscribed yet: no ack will come
        elif kind == "ack_received":
            started = self._unacked.pop(message_id, None)
            if started is not None:
                self.fire("ack_received", started)
