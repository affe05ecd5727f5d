"""``robot-platform echo <subject>``: print platform messages from NATS like ``ros2 topic echo``.

Needs no ROS: the body is msgpack, rendered as YAML (see :mod:`.render`). Wildcards are fine
(``robots.r1.ros.>``). A message that is not a msgpack map is reported as a comment line and skipped.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, TextIO

import nats.errors

from robot_platform.cli.render import DEFAULT_TRUNCATE_LENGTH, to_yaml
from robot_platform.messaging.codec import unpack
from robot_platform.messaging.connect import Credentials, connect_once
from robot_platform.messaging.errors import BridgeError, SubjectError

SUBJECT_RE = re.compile(r"^[^\s.]+(\.[^\s.]+)*$")


async def echo(
    url: str,
    subject: str,
    count: int,
    out: TextIO,
    *,
    show_headers: bool = False,
    truncate_length: int | None = DEFAULT_TRUNCATE_LENGTH,
    no_arr: bool = False,
    user: str = "",
    password: str = "",
) -> int:
    """Print ``count`` messages on ``subject`` (0 = until cancelled); return how many were printed."""
    if not SUBJECT_RE.fullmatch(subject or ""):
        raise SubjectError(subject, "not a NATS subject (tokens separated by '.', no spaces)")
    nc = await connect_once(url, name="robot-platform echo", credentials=Credentials(user, password))
    printed = 0
    done = asyncio.Event()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)

    async def on_msg(msg: Any) -> None:
        if queue.full():  # a slow terminal must not grow memory: drop the oldest
            queue.get_nowait()
        queue.put_nowait(msg)

    try:
        await nc.subscribe(subject, cb=on_msg)
        while not done.is_set():
            msg = await queue.get()
            if show_headers:
                out.write(f"# subject: {msg.subject}\n")
                for key, value in (msg.headers or {}).items():
                    out.write(f"# {key}: {value}\n")
            try:
                data = unpack(msg.data, msg.subject)
            except BridgeError as exc:
                out.write(f"# {msg.subject}: {exc}\n")
                continue
            out.write(to_yaml(data, truncate_length=truncate_length, no_arr=no_arr))
            out.flush()
            printed += 1
            if count and printed >= count:
                done.set()
    finally:
        try:
            await nc.drain()
        except (nats.errors.Error, OSError):
            await nc.close()
    return printed
