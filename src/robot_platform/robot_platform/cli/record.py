"""``robot-platform record``: record chosen topics of chosen robots from the hub into an MCAP file.

    robot-platform record --robots r1,r2 --topics /odom,/scan [--alerts] --max-seconds 600 --max-bytes 200M \\
        --out incident-42.mcap

Stops at ``--max-seconds``, at ``--max-bytes`` of messages, or on Ctrl-C / SIGTERM, and always finishes the
file (index and summary written), then prints what it recorded as JSON. An existing ``--out`` file is
never overwritten. NATS options as for the other fleet commands (``--url``, ``--user``,
``--password-file`` or ``$RP_NATS_URL``, ``$RP_NATS_USER``, ``$RP_NATS_PASSWORD_FILE``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from robot_platform.messaging.codec import Codec
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.nats_link import NatsLink
from robot_platform.recording.errors import RecordingError, RecordSpecError
from robot_platform.recording.mcap_out import RosMcapWriter
from robot_platform.recording.msgdefs import MessageDefinitions
from robot_platform.recording.recorder import STOP_DURATION, STOP_SIGNAL, FleetRecorder, RecordSpec

DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MAX_BYTES = "200M"
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
POLL_S = 0.2  # how often the main thread looks at the stop conditions (signals also wake it)
log = logging.getLogger("robot-platform.record")


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_size(text: str) -> int:
    """``200M``, ``1.5G``, ``65536`` -> bytes (K/M/G are binary multiples); RecordSpecError otherwise."""
    value = text.strip().upper().removesuffix("B") if isinstance(text, str) else ""
    unit = value[-1:] if value[-1:] in ("K", "M", "G") else ""
    try:
        return int(float(value[: len(value) - len(unit)]) * UNITS[unit])
    except (ValueError, OverflowError):  # OverflowError: "inf", "1e400"
        raise RecordSpecError("--max-bytes", f"{text!r} is not a size like 200M, 1G or 65536") from None


def _open_new(path: Path) -> Any:
    try:
        return path.open("xb")
    except FileExistsError:
        raise RecordSpecError("--out", f"{path} exists; choose another name") from None
    except OSError as exc:
        raise RecordSpecError("--out", f"{path}: {exc.strerror}") from None


def _cmd_record(args: argparse.Namespace) -> int:
    from rclpy.serialization import serialize_message  # ROS only in the command, not in the logic

    spec = RecordSpec(_split(args.robots), _split(args.topics), float(args.max_seconds),
                      parse_size(args.max_bytes), alerts=args.alerts).check()  # fmt: skip
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.out or f"recording-{'_'.join(spec.robots)[:80]}-{stamp}.mcap")  # ids checked: no path parts
    password = Path(args.password_file).expanduser().read_text(encoding="utf-8").strip() if args.password_file else ""
    metadata = {"robots": ",".join(spec.robots), "topics": ",".join(spec.topics), "started": f"{time.time():.3f}"}
    with _open_new(out) as stream:
        writer = RosMcapWriter(stream, MessageDefinitions(), max_message_bytes=spec.max_bytes, metadata=metadata)
        recorder = FleetRecorder(spec, writer, Codec(), serialize_message, log=log)
        credentials = Credentials(args.user, password)
        link = NatsLink(args.url, on_message=recorder.on_message, subscriptions=spec.subjects(),
                        name="robot-platform-record", credentials=credentials, log=log)  # fmt: skip
        previous = {sig: signal.signal(sig, lambda *_: recorder.stop(STOP_SIGNAL))
                    for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
        deadline = time.monotonic() + spec.max_seconds
        link.start()
        try:
            while not recorder.done.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    recorder.stop(STOP_DURATION)
        finally:
            link.stop()  # joins the link thread: nothing writes after this
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                writer.finish()
            except OSError as exc:  # disk full: say so (exit 2), no traceback
                raise RecordingError(f"{out}: cannot finish the file: {exc.strerror or exc}") from None
    summary = {"saved_to": str(out), "bytes": out.stat().st_size, **recorder.summary(),
               "dropped_slow_consumer": link.counters.dropped_slow_consumer}  # fmt: skip
    print(json.dumps(summary, indent=2))
    if not summary["messages"]:
        log.error("nothing recorded: no messages on %s (robot online? topic bridged?)", ", ".join(spec.subjects()))
        return 1
    return 0


def add_subparsers(subparsers: Any) -> None:
    record = subparsers.add_parser("record", help="record robots' topics from the hub into an MCAP file")
    record.add_argument("--robots", required=True, help="robot ids, e.g. r1,r2")
    record.add_argument("--topics", required=True, help="ROS topics as bridged, e.g. /odom,/scan")
    record.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help=f"stop after this long (default {DEFAULT_MAX_SECONDS:g})")  # fmt: skip
    record.add_argument(
        "--max-bytes",
        default=DEFAULT_MAX_BYTES,
        help=f"stop at this much message data: 65536, 20K, 1G (default {DEFAULT_MAX_BYTES})",
    )
    record.add_argument("--alerts", action="store_true", help="also record the robots' alerts (/robots/<id>/alerts)")
    record.add_argument("--out", default="", help="MCAP file to create (never overwritten)")
    record.add_argument("--url", default=os.environ.get("RP_NATS_URL", "nats://127.0.0.1:4222"), help="NATS hub")
    record.add_argument("--user", default=os.environ.get("RP_NATS_USER", ""), help="NATS user")
    record.add_argument("--password-file", default=os.environ.get("RP_NATS_PASSWORD_FILE", ""),
                        help="file holding the NATS password")  # fmt: skip
    record.set_defaults(func=_cmd_record)
