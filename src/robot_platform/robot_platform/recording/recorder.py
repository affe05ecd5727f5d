"""Fleet recorder: chosen telemetry of chosen robots, taken from the hub, written as one MCAP file.

For incident review on the control side: the robots' bridges already publish their topics on
``robots.<id>.ros.<topic>`` (msgpack bodies, ``Ros-Type`` header); the recorder subscribes to the
chosen ones, rebuilds each ROS message with the platform's codec, serializes it to CDR (the serializer
is handed in: rclpy's ``serialize_message`` in the CLI, so this module imports no rclpy) and writes it
on topic ``/robots/<id>/<topic>``. One file holds several robots without their topics colliding. With
``alerts`` the robots' alerts (``robots.<id>.alerts``, robot_platform_interfaces/msg/Alert) go on
``/robots/<id>/alerts``, so a review sees the fault next to the data that led to it.

Bounds: ``max_seconds`` and ``max_bytes`` (messages written: payload plus their records' overhead,
mcap_out.MESSAGE_OVERHEAD) are both required and capped
(MAX_SECONDS, MAX_BYTES); reaching either ends the recording cleanly, as does SIGINT/SIGTERM in the CLI.
Bad input never stops it: a message without the envelope, of an unknown type or with a body the codec
refuses is counted in ``rejected`` (by reason) and logged once per reason; duplicates (same message id,
e.g. a republish after a reconnect) are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_platform.messaging import subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import DuplicateFilter, Envelope
from robot_platform.messaging.errors import BridgeError
from robot_platform.recording.errors import RecordingError, RecordingFullError, RecordSpecError, SerializeError
from robot_platform.recording.mcap_out import RosMcapWriter

MAX_SECONDS = 6 * 3600.0  # one recording; longer reviews are several files
MAX_BYTES = 4 * 1024**3
MAX_ROBOTS = 50
MAX_TOPICS = 32
STOP_DURATION = "max_seconds"
STOP_FULL = "max_bytes"
STOP_SIGNAL = "signal"
STOP_WRITE_ERROR = "write_error"

Serializer = Callable[[Any], bytes]


@dataclass(frozen=True)
class RecordSpec:
    """What to record and its bounds; :meth:`check` validates every piece that goes into a subject."""

    robots: tuple[str, ...]
    topics: tuple[str, ...]
    max_seconds: float
    max_bytes: int
    alerts: bool = False

    def check(self) -> RecordSpec:
        if not self.robots or len(self.robots) > MAX_ROBOTS:
            raise RecordSpecError("robots", f"give 1-{MAX_ROBOTS} robot ids")
        if not self.topics or len(self.topics) > MAX_TOPICS:
            raise RecordSpecError("topics", f"give 1-{MAX_TOPICS} topics")
        try:
            for robot in self.robots:
                subjects.check_robot_id(robot)
            for topic in self.topics:
                subjects.check_topic(topic)
        except BridgeError as exc:
            raise RecordSpecError("robots/topics", str(exc)) from None
        if not 0 < self.max_seconds <= MAX_SECONDS:
            raise RecordSpecError("max_seconds", f"must be in (0, {MAX_SECONDS:g}]")
        if not 0 < self.max_bytes <= MAX_BYTES:
            raise RecordSpecError("max_bytes", f"must be in (0, {MAX_BYTES}]")
        return self

    def subjects(self) -> list[str]:
        telemetry = [subjects.telemetry(robot, topic) for robot in self.robots for topic in self.topics]
        return telemetry + ([subjects.alerts(robot) for robot in self.robots] if self.alerts else [])


def recorded_topic(robot_id: str, topic: str) -> str:
    """``r1``, ``/odom`` -> ``/robots/r1/odom``: one namespace per robot in the file."""
    return f"/robots/{robot_id}{topic}"


class FleetRecorder:
    """Turns envelope messages into MCAP records; ``on_message`` runs on one thread (the NATS link's).

    ``done`` is set when a bound is reached or :meth:`stop` is called; ``stopped_by`` says which.
    """

    def __init__(
        self,
        spec: RecordSpec,
        writer: RosMcapWriter,
        codec: Codec,
        serialize: Serializer,
        log: logging.Logger | Any | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.spec = spec.check()
        self.writer = writer
        self.codec = codec
        self.serialize = serialize
        self.log = log or logging.getLogger(__name__)
        self.clock_ns = clock_ns
        self.done = threading.Event()
        self.stopped_by = ""
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self._duplicates = DuplicateFilter()
        self._wanted = set(spec.subjects())

    def stop(self, reason: str) -> None:
        if not self.done.is_set():
            self.stopped_by = reason
            self.done.set()

    def on_message(self, subject: str, headers: dict[str, str] | None, data: bytes) -> None:
        if self.done.is_set():
            return
        try:
            if subject not in self._wanted:
                raise RecordingError(f"{subject} was not asked for")
            envelope = Envelope.from_headers(subject, headers)
            if self._duplicates.seen(envelope.msg_id):
                self.duplicates += 1
                return
            parsed = subjects.parse(subject)
            cls = self.codec.registry.load(envelope.type_name)
            # Recorded as sent: NaN/inf are legitimate in telemetry (LaserScan ranges), unlike in commands.
            msg = self.codec.decode(cls, data, subject, allow_non_finite=True)
            topic = recorded_topic(parsed.robot_id, parsed.topic if parsed.kind == "ros" else "/alerts")
            try:
                cdr = bytes(self.serialize(msg))
            except Exception as exc:  # rclpy's serializer raises plain exceptions (a value its C layer refuses)
                raise SerializeError(subject, exc) from None
            now = self.clock_ns()
            self.writer.add(topic, envelope.type_name, cdr, now, envelope.sent_ns or now)
            self.counts[topic] += 1
        except RecordingFullError:
            self.stop(STOP_FULL)
        except (BridgeError, RecordingError) as exc:
            reason = type(exc).__name__
            if not self.rejected[reason]:
                self.log.warning(f"recording: message rejected ({reason}, further ones only counted): {exc}")
            self.rejected[reason] += 1
        except OSError as exc:  # the file cannot be written (disk full...): end here, the summary says why
            self.log.error(f"recording: cannot write {exc.filename or 'the file'}: {exc.strerror or exc}; stopping")
            self.stop(STOP_WRITE_ERROR)

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.writer.messages,
            "message_bytes": self.writer.message_bytes,
            "record_bytes": self.writer.record_bytes,
            "topics": {topic: {"type": t, "messages": self.counts[topic]} for topic, t in self.writer.topics.items()},
            "silent": [
                recorded_topic(r, t)
                for r in self.spec.robots
                for t in self.spec.topics
                if not self.counts[recorded_topic(r, t)]
            ],
            "rejected": dict(self.rejected),
            "duplicates": self.duplicates,
            "stopped_by": self.stopped_by,
        }
