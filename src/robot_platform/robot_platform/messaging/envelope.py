"""The self-describing NATS envelope: headers naming what the msgpack body is, and duplicate dropping.

Headers (all strings, NATS headers are text):

    Content-Type   application/msgpack
    Ros-Type       nav_msgs/msg/Odometry                 (required)
    Ros-Type-Hash  RIHS01_<sha256> (or RPL01_, see rostypes)
    Ros-Topic      /odom                                  (topic on the source graph)
    Robot-Id       r1                                     (robot the message comes from / is for)
    Ros-Stamp      1700000000.000000123                   (header.stamp of the message, if it has one)
    Rp-Seq         42                                     (per topic, per origin, from 1)
    Rp-Origin      <uuid4 hex>                            (bridge process that sent it; Rp-Seq restarts)
    Rp-Sent-Ns     1700000000123456789                    (wall clock when handed to NATS)
    Nats-Msg-Id    <origin>-<counter hex>                 (required; JetStream also dedups on it)

Message ids are the sender's random origin id plus a per-process counter: unique without a
``uuid4()`` per message (the bridge's hot path). ``Nats-Msg-Id`` is the message id on purpose:
JetStream streams drop a re-published message with the same id inside their duplicate window, and
subscribers drop repeats with :class:`DuplicateFilter`.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from robot_platform.messaging.errors import EnvelopeError

CONTENT_TYPE = "application/msgpack"
H_CONTENT_TYPE = "Content-Type"
H_TYPE = "Ros-Type"
H_HASH = "Ros-Type-Hash"
H_TOPIC = "Ros-Topic"
H_ROBOT = "Robot-Id"
H_STAMP = "Ros-Stamp"
H_SEQ = "Rp-Seq"
H_ORIGIN = "Rp-Origin"
H_SENT = "Rp-Sent-Ns"
H_MSG_ID = "Nats-Msg-Id"
MAX_HEADER_VALUE = 256


@dataclass(frozen=True)
class Envelope:
    """Decoded headers of one NATS message of the platform."""

    type_name: str
    msg_id: str
    topic: str = ""
    robot_id: str = ""
    type_hash: str = ""
    stamp: str = ""
    seq: int = 0
    origin: str = ""
    sent_ns: int = 0

    def headers(self) -> dict[str, str]:
        h = {H_CONTENT_TYPE: CONTENT_TYPE, H_TYPE: self.type_name, H_MSG_ID: self.msg_id}
        for key, value in (
            (H_TOPIC, self.topic),
            (H_ROBOT, self.robot_id),
            (H_HASH, self.type_hash),
            (H_STAMP, self.stamp),
            (H_ORIGIN, self.origin),
        ):
            if value:
                h[key] = value
        if self.seq:
            h[H_SEQ] = str(self.seq)
        if self.sent_ns:
            h[H_SENT] = str(self.sent_ns)
        return h

    @classmethod
    def from_headers(cls, subject: str, headers: dict[str, str] | None) -> Envelope:
        """Parse and check headers; EnvelopeError names the header at fault."""
        if not headers:
            raise EnvelopeError(subject, H_TYPE, "message has no headers; publish with the platform envelope")
        for key, value in headers.items():
            if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE:
                raise EnvelopeError(subject, str(key), f"value must be text of at most {MAX_HEADER_VALUE} chars")
        ctype = headers.get(H_CONTENT_TYPE, CONTENT_TYPE)
        if ctype != CONTENT_TYPE:
            raise EnvelopeError(subject, H_CONTENT_TYPE, f"{ctype!r} is not {CONTENT_TYPE}")
        type_name = headers.get(H_TYPE, "")
        if not type_name:
            raise EnvelopeError(subject, H_TYPE, "missing")
        msg_id = headers.get(H_MSG_ID, "")
        if not msg_id:
            raise EnvelopeError(subject, H_MSG_ID, "missing")
        return cls(
            type_name=type_name,
            msg_id=msg_id,
            topic=headers.get(H_TOPIC, ""),
            robot_id=headers.get(H_ROBOT, ""),
            type_hash=headers.get(H_HASH, ""),
            stamp=headers.get(H_STAMP, ""),
            seq=_int_header(subject, headers, H_SEQ),
            origin=headers.get(H_ORIGIN, ""),
            sent_ns=_int_header(subject, headers, H_SENT),
        )


def _int_header(subject: str, headers: dict[str, str], key: str) -> int:
    raw = headers.get(key, "")
    if not raw:
        return 0
    if not raw.isdigit():
        raise EnvelopeError(subject, key, f"{raw!r} is not a non-negative integer")
    return int(raw)


def stamp_of(msg: Any) -> str:
    """'sec.nanosec' of ``msg.header.stamp`` (or ``msg.stamp``), '' if the message has none."""
    holder = getattr(msg, "header", msg)
    stamp = getattr(holder, "stamp", None)
    sec, nanosec = getattr(stamp, "sec", None), getattr(stamp, "nanosec", None)
    if isinstance(sec, int) and isinstance(nanosec, int):
        return f"{sec}.{nanosec:09d}"
    return ""


class EnvelopeFactory:
    """Makes outgoing envelopes of one bridge process: message ids, per-topic sequence numbers."""

    def __init__(self, robot_id: str, origin: str | None = None) -> None:
        self.robot_id = robot_id
        self.origin = origin or uuid.uuid4().hex
        self._seq: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._static: dict[tuple[str, str, str], dict[str, str]] = {}

    def headers(self, type_name: str, type_hash: str, topic: str, stamp: str = "") -> dict[str, str]:
        """``make(...).headers()`` without building an Envelope: the bridge's per-message path.

        The headers that never change for a topic are built once; only the message id, sequence number,
        stamp and send time are filled in per message (same values and sequence as :meth:`make`)."""
        key = (type_name, type_hash, topic)
        static = self._static.get(key)
        if static is None:
            static = Envelope(type_name, "-", topic, self.robot_id, type_hash, origin=self.origin).headers()
            del static[H_MSG_ID]
            self._static[key] = static
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        h = static.copy()
        h[H_MSG_ID] = f"{self.origin}-{next(self._ids):x}"
        if stamp:
            h[H_STAMP] = stamp
        h[H_SEQ] = str(seq)
        h[H_SENT] = str(time.time_ns())
        return h

    def make(self, type_name: str, type_hash: str, topic: str, stamp: str = "") -> Envelope:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        return Envelope(
            type_name=type_name,
            msg_id=f"{self.origin}-{next(self._ids):x}",
            topic=topic,
            robot_id=self.robot_id,
            type_hash=type_hash,
            stamp=stamp,
            seq=seq,
            origin=self.origin,
            sent_ns=time.time_ns(),
        )


class DuplicateFilter:
    """Remembers the last ``capacity`` message ids (LRU) and says whether one was already seen."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def seen(self, msg_id: str) -> bool:
        """True (and counted) if ``msg_id`` was seen recently; otherwise remember it and return False."""
        if msg_id in self._ids:
            self._ids.move_to_end(msg_id)
            self.duplicates += 1
            return True
        self._ids[msg_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)
