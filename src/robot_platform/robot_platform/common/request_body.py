"""Request bodies of the platform's NATS request/reply APIs (jobs, registry, log query).

Programs send msgpack; a person at a shell sends JSON (``nats req jobs.list '{}'``). Both are accepted,
an empty body means ``{}``, and anything else is refused with one reason the caller turns into its own
typed error.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack


class BadRequestBody(ValueError):
    """The body is neither msgpack nor JSON, or too large."""


def decode_request_body(data: bytes, max_bytes: int | None = None) -> Any:
    """msgpack or JSON; empty = ``{}``. Raises BadRequestBody naming the problem."""
    if not data:
        return {}
    if max_bytes is not None and len(data) > max_bytes:
        raise BadRequestBody(f"request larger than {max_bytes} bytes")
    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        pass
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestBody("request body is neither msgpack nor JSON") from None
