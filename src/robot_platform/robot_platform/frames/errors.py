"""Typed errors of the frame publisher.

Each error carries the data that explains it and a stable ``kind`` used as a counter name, so the node
can reject one frame or one lease request, count it, log one line, and keep running.
"""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class FramesError(RobotPlatformError):
    """Base of every frame publisher error."""

    kind = "frames_error"


class UnsupportedEncodingError(FramesError):
    """An Image/CompressedImage encoding the converter does not handle."""

    kind = "unsupported_encoding"

    def __init__(self, encoding: str, supported: tuple[str, ...]) -> None:
        super().__init__(
            f"image encoding {encoding!r} is not supported; publish one of {', '.join(supported)}"
            " (or a JPEG/PNG sensor_msgs/CompressedImage)"
        )
        self.encoding = encoding
        self.supported = supported


class ImageLayoutError(FramesError):
    """The Image's width/height/step do not match its data (truncated or inconsistent message)."""

    kind = "bad_image"

    def __init__(self, encoding: str, width: int, height: int, step: int, size: int, reason: str) -> None:
        super().__init__(
            f"{encoding} image {width}x{height} (step {step}, {size} data bytes) is inconsistent: {reason};"
            " check the camera driver's Image fields"
        )
        self.encoding = encoding
        self.width = width
        self.height = height
        self.step = step
        self.size = size
        self.reason = reason


class CompressedDecodeError(FramesError):
    """A CompressedImage's bytes could not be decoded for re-encoding."""

    kind = "bad_compressed"

    def __init__(self, image_format: str, reason: str) -> None:
        super().__init__(f"cannot decode CompressedImage (format {image_format!r}): {reason}")
        self.image_format = image_format
        self.reason = reason


class LeaseRequestError(FramesError):
    """A lease request is malformed or refused (bad id, bad ttl, too many leases, unknown camera)."""

    kind = "bad_lease_request"

    def __init__(self, camera: str, reason: str) -> None:
        super().__init__(f"lease request for camera {camera!r} refused: {reason}")
        self.camera = camera
        self.reason = reason
