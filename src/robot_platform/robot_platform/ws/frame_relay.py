"""Camera frames to browsers: the binary ``frame`` message, and the agent's one lease per watched camera.

Frames travel on ``robots.<id>.frames.<camera>`` as a JPEG body with the headers of
:mod:`robot_platform.frames.meta` (not the bridge's msgpack envelope). A client subscribes to
``/robots/<id>/frames/<camera>`` (robot mode: also ``/frames/<camera>``) like to any topic and gets, per
frame, ONE binary WebSocket message, whatever ``compression`` it asked for::

    msgpack map {
      "op": "frame",
      "topic": "/robots/r1/frames/front",         # the name the client subscribed to
      "meta": {"robot": "r1", "camera": "front", "source_topic": "/camera/image_raw",
               "format": "jpeg", "width": 320, "height": 240, "encoding": "rgb8", "quality": 80,
               "scale": 1.0, "seq": 42, "stamp": "1700000000.000000123",
               "stamp_ms": 1700000000000.0,     # camera stamp, ms since the epoch: age = Date.now() - stamp_ms
               "sent_ms": 1700000000012.5},     # when frame_publisher sent it
      "data": <bin: the JPEG bytes>              # e.g. new Blob([data], {type: "image/jpeg"})
    }

Each client has one latest-frame slot per camera (a new frame replaces an unsent one, counted as
``dropped_queue``): a slow client always gets a recent frame, never a backlog. ``throttle_rate`` of the
subscribe still spaces frames (e.g. 500 ms for a 2 fps thumbnail).

frame_publisher sends a camera's frames only while a lease on it is alive: the agent's leases on the
cameras its clients watch are camera_leases.py.
"""

from __future__ import annotations

from typing import Any

import msgpack

from robot_platform.frames.meta import FrameMeta
from robot_platform.ws.outgoing import Frame, Outgoing

FRAME_KIND = "frames"


def is_frame_subject(subject: str) -> bool:
    """True for a concrete camera subject ``robots.<id>.frames.<camera>`` (not its ``.lease`` subject)."""
    parts = subject.split(".")
    return len(parts) == 4 and parts[0] == "robots" and parts[2] == FRAME_KIND and "*" not in parts


def meta_dict(meta: FrameMeta) -> dict[str, Any]:
    """What a browser needs of a frame's headers (times in ms since the epoch: JS numbers, no BigInt)."""
    return {
        "robot": meta.robot_id,
        "camera": meta.camera,
        "source_topic": meta.topic,
        "format": "jpeg",
        "width": meta.width,
        "height": meta.height,
        "encoding": meta.encoding,
        "quality": meta.quality,
        "scale": meta.scale,
        "seq": meta.seq,
        "stamp": meta.stamp,
        "stamp_ms": meta.stamp_ns / 1e6,
        "sent_ms": meta.sent_ns / 1e6,
    }


class FrameOutgoing(Outgoing):
    """One camera frame shared by every client watching it; the binary message is built once per topic."""

    __slots__ = ("meta",)

    def __init__(self, subject: str, jpeg: bytes, meta: FrameMeta) -> None:
        super().__init__(subject, "", jpeg, meta.robot_id)
        self.meta = meta

    def _encode(self, topic: str, compression: str) -> Frame:
        return encode_frame(topic, self.meta, self.body)


def encode_frame(topic: str, meta: FrameMeta, jpeg: bytes) -> bytes:
    return msgpack.packb({"op": "frame", "topic": topic, "meta": meta_dict(meta), "data": jpeg}, use_bin_type=True)
