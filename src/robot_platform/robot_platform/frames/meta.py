"""Headers of a frame message on ``robots.<id>.frames.<camera>``: the body is the JPEG itself.

The bridge's envelope headers are reused where they mean the same thing (robot, source topic, stamp,
sequence, origin, send time, message id); ``Content-Type`` is ``image/jpeg`` instead of msgpack, so
``Envelope.from_headers`` correctly refuses a frame as a ROS message, and there is no ``Ros-Type``
because the body is not one. Frame-specific headers::

    Rp-Camera          front
    Rp-Frame-Width     640          (of the JPEG, after scaling)
    Rp-Frame-Height    480
    Rp-Frame-Encoding  rgb8         (the source Image encoding, or the CompressedImage format)
    Rp-Frame-Quality   80           (JPEG quality used; 0 = source JPEG passed through)
    Rp-Frame-Scale     0.5          (output size / source size)
"""

from __future__ import annotations

from dataclasses import dataclass

from robot_platform.messaging.envelope import H_MSG_ID, H_ORIGIN, H_ROBOT, H_SENT, H_SEQ, H_STAMP, H_TOPIC

CONTENT_TYPE_JPEG = "image/jpeg"
H_CONTENT_TYPE = "Content-Type"
H_CAMERA = "Rp-Camera"
H_WIDTH = "Rp-Frame-Width"
H_HEIGHT = "Rp-Frame-Height"
H_ENCODING = "Rp-Frame-Encoding"
H_QUALITY = "Rp-Frame-Quality"
H_SCALE = "Rp-Frame-Scale"


@dataclass(frozen=True)
class FrameMeta:
    """What a viewer needs to show a frame and judge its age."""

    robot_id: str
    camera: str
    topic: str
    stamp: str  # "sec.nanosec" of the source header, '' if none
    seq: int
    origin: str
    sent_ns: int
    msg_id: str
    width: int
    height: int
    encoding: str
    quality: int
    scale: float

    def headers(self) -> dict[str, str]:
        return {
            H_CONTENT_TYPE: CONTENT_TYPE_JPEG,
            H_ROBOT: self.robot_id,
            H_CAMERA: self.camera,
            H_TOPIC: self.topic,
            H_STAMP: self.stamp,
            H_SEQ: str(self.seq),
            H_ORIGIN: self.origin,
            H_SENT: str(self.sent_ns),
            H_MSG_ID: self.msg_id,
            H_WIDTH: str(self.width),
            H_HEIGHT: str(self.height),
            H_ENCODING: self.encoding[:128],
            H_QUALITY: str(self.quality),
            H_SCALE: f"{self.scale:g}",
        }

    @classmethod
    def from_headers(cls, headers: dict[str, str] | None) -> FrameMeta:
        """Parse a frame's headers; ValueError naming the header at fault."""
        h = headers or {}
        if h.get(H_CONTENT_TYPE) != CONTENT_TYPE_JPEG:
            raise ValueError(f"{H_CONTENT_TYPE} is {h.get(H_CONTENT_TYPE)!r}, not {CONTENT_TYPE_JPEG}")

        def num(key: str, kind: type = int) -> int:
            raw = h.get(key, "")
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"header {key}={raw!r} is not a number") from None

        return cls(
            robot_id=h.get(H_ROBOT, ""),
            camera=h.get(H_CAMERA, ""),
            topic=h.get(H_TOPIC, ""),
            stamp=h.get(H_STAMP, ""),
            seq=num(H_SEQ),
            origin=h.get(H_ORIGIN, ""),
            sent_ns=num(H_SENT),
            msg_id=h.get(H_MSG_ID, ""),
            width=num(H_WIDTH),
            height=num(H_HEIGHT),
            encoding=h.get(H_ENCODING, ""),
            quality=num(H_QUALITY),
            scale=float(num(H_SCALE, float)),
        )

    @property
    def stamp_ns(self) -> int:
        """Source stamp in ns since the epoch (0 if none)."""
        if not self.stamp:
            return 0
        sec, _, nsec = self.stamp.partition(".")
        return int(sec) * 1_000_000_000 + int(nsec or 0)
