"""A message on its way to browsers: one NATS message shared by every client session receiving it.

Why shared: a telemetry message fanned out to many clients is decoded once and encoded once per
(topic, compression), and its WebSocket frame is built once and written to every socket as is; the
sessions queue references to it, never copies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_platform.messaging.codec import unpack
from robot_platform.ws import protocol

Frame = str | bytes
WILDCARD = "*"


class Outgoing:
    """One NATS message shared by all clients receiving it; each frame is encoded once, on first use."""

    __slots__ = ("_derived", "_dict", "_frames", "_lock", "_wire", "body", "robot_id", "subject", "type_name")

    def __init__(self, subject: str, type_name: str, body: bytes, robot_id: str = "") -> None:
        self.subject = subject
        self.type_name = type_name
        self.body = body
        self.robot_id = robot_id
        self._dict: dict[str, Any] | None = None
        self._frames: dict[tuple[str, str], Frame] = {}
        self._wire: dict[tuple[str, str], bytes] = {}
        self._derived: dict[str, Any] = {}
        # Every sender thread of a fan-out wakes for the same message: without the lock each would
        # encode it (measured: p99 up when 10 clients raced to JSON-encode the same Odometry).
        self._lock = threading.Lock()

    def msg(self) -> dict[str, Any]:
        """The message dict (decoded once); MalformedPayloadError if the body is not a msgpack map."""
        if self._dict is None:
            self._dict = unpack(self.body, self.subject)
        return self._dict

    def frame(self, topic: str, compression: str) -> Frame:
        key = (topic, compression)
        frame = self._frames.get(key)
        if frame is None:
            with self._lock:
                frame = self._frames.get(key)
                if frame is None:
                    frame = self._encode(topic, compression)
                    self._frames[key] = frame
        return frame

    def _encode(self, topic: str, compression: str) -> Frame:
        robot = self.robot_id if WILDCARD in topic else None  # which robot, for /robots/*/... subscriptions
        if compression == "msgpack":
            return protocol.publish_msgpack(topic, self.body, robot)
        if compression == "cbor":
            return protocol.publish_cbor(topic, self.msg(), robot)
        return protocol.publish_json(topic, self.msg(), robot)

    def derived(self, key: str, make: Callable[[Outgoing], Any]) -> Any:
        """``make(self)`` computed once per key for every client (the Foxglove path's CDR payload)."""
        value = self._derived.get(key)
        if value is None:
            with self._lock:
                value = self._derived.get(key)
                if value is None:
                    value = make(self)
                    self._derived[key] = value
        return value

    def wire(self, topic: str, compression: str) -> bytes:
        """The complete WebSocket frame of :meth:`frame`: framed once, written to every client as is."""
        key = (topic, compression)
        wire = self._wire.get(key)
        if wire is None:
            frame = self.frame(topic, compression)
            with self._lock:
                wire = self._wire.get(key)
                if wire is None:
                    wire = protocol.ws_frame(frame)
                    self._wire[key] = wire
        return wire


@dataclass(frozen=True)
class Pending:
    """A publish to render outside the session lock."""

    topic: str
    compression: str
    fragment_size: int
    out: Outgoing
