"""An HTTP reply of ws_agent (status, body, headers) and its two common shapes: plain text and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HttpReply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def text(status: int, message: str, **headers: str) -> HttpReply:
    return HttpReply(status, (message + "\n").encode(), headers=dict(headers))


def json_reply(status: int, body: Any) -> HttpReply:
    return HttpReply(status, json.dumps(body).encode(), "application/json", {"Cache-Control": "no-store"})
