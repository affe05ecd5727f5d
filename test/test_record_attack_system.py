"""`robot-platform record` against a hostile robot: real nats-server, the real CLI, a publisher that lies.

The "robot" r1 (a nats-py client) floods the recorded subject with 5-byte std_msgs/Bool messages in a
valid envelope, mixed with garbage (no envelope, a 100,000-deep msgpack nest, an array header claiming
4 G items, a type that is not installed, a 512 KiB body). Checked:

- the byte bound holds for the FILE, not only for the payload: with --max-bytes 64K the file stays under
  80 KiB (before: the per-message records made it ~4 times the bound); stopped_by max_bytes;
- every kind of garbage is rejected, counted by reason, logged once per reason, and the recording goes on;
- the time bound holds while the flood and the 512 KiB bodies go on (--max-seconds 2: done within 15 s);
- arguments that are not sizes (inf, 1e400) exit 2 with the argument's name, no traceback.
Duration: about 12 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
from mcap.reader import make_reader

from helpers import wait_for
from robot_platform.messaging.envelope import Envelope
from test_record_system import finish, record, recorder_out_msgs

BOUND = 64 * 1024


def hostile_robot(url: str, stop: threading.Event) -> None:
    """Tiny valid messages as fast as it can, and every few of them a piece of garbage."""

    async def run() -> None:
        nc = await nats.connect(url)
        env = Envelope(type_name="std_msgs/msg/Bool", msg_id="x", robot_id="r1").headers()
        garbage = [
            ({}, b"no envelope"),
            (env, b"\x91" * 100_000),  # nested beyond msgpack's stack
            (env, b"\xdd\xff\xff\xff\xff"),  # an array "of 4 G items"
            ({**env, "Ros-Type": "nope/msg/Nothing"}, b"\x80"),
            ({**env, "Ros-Type": "std_msgs/msg/String"}, msgpack.packb({"data": "x" * 512 * 1024})),
        ]
        i = 0
        while not stop.is_set():
            for _ in range(50):
                await nc.publish("robots.r1.ros.flag", msgpack.packb({"data": True}),
                                 headers={**env, "Nats-Msg-Id": uuid.uuid4().hex})  # fmt: skip
            headers, body = garbage[i % len(garbage)]
            await nc.publish("robots.r1.ros.flag", body, headers={**headers, "Nats-Msg-Id": uuid.uuid4().hex})
            i += 1
            await asyncio.sleep(0.005)
        await nc.close()

    asyncio.run(run())


def test_hostile_robot_cannot_grow_the_file_or_stop_the_recording(nats_server: Any, tmp_path: Path) -> None:
    for size in ("inf", "1e400"):
        code, _, err = finish(record(nats_server.url, "--topics", "/flag", "--max-bytes", size))
        assert code == 2 and "record: --max-bytes" in err and "Traceback" not in err, err

    capped, timed = tmp_path / "capped.mcap", tmp_path / "timed.mcap"
    stop = threading.Event()
    robot = threading.Thread(target=hostile_robot, args=(nats_server.url, stop), daemon=True)
    by_bytes = record(nats_server.url, "--topics", "/flag", "--max-bytes", "64K", "--max-seconds", "60",
                      "--out", str(capped))  # fmt: skip
    wait_for(lambda: recorder_out_msgs(nats_server.monitor_url) >= 0 and _subscribed(nats_server.monitor_url), 30,
             "the recorder subscribed")  # fmt: skip
    robot.start()
    try:
        code, summary, err = finish(by_bytes)
        assert code == 0 and summary["stopped_by"] == "max_bytes", err
        assert capped.stat().st_size < BOUND + 16 * 1024, (capped.stat().st_size, summary)
        assert summary["record_bytes"] <= BOUND and summary["messages"] > 500, summary
        with capped.open("rb") as f:
            assert sum(1 for _ in make_reader(f).iter_messages()) == summary["messages"]

        start = time.monotonic()
        code, summary, err = finish(record(nats_server.url, "--topics", "/flag", "--max-seconds", "2",
                                           "--max-bytes", "4G", "--out", str(timed)))  # fmt: skip
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        robot.join(timeout=10)
    assert code == 0 and summary["stopped_by"] == "max_seconds" and elapsed < 15, (elapsed, err)
    rejected = summary["rejected"]
    for reason in ("EnvelopeError", "MalformedPayloadError", "UnknownTypeError", "TopicTypeError"):
        assert rejected.get(reason, 0) > 0, rejected
        assert err.count(f"message rejected ({reason}") == 1, err[-2000:]
    assert summary["messages"] > 100 and "Traceback" not in err


def _subscribed(monitor_url: str) -> bool:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{monitor_url}/connz?subs=1", timeout=2) as response:
        conns = json.loads(response.read()).get("connections") or []
    return any(c.get("name") == "robot-platform-record" and c.get("subscriptions_list") for c in conns)
