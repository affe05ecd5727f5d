"""fleet.logs.query's reading of FLEET_LOGS against a real nats-server (JetStream): the newest matching
records come back (oldest first) even when the window holds more than the scan cap, and the robot,
level, node, text and time filters apply. The stream here takes the records directly (on a site it
sources the robots' streams; test_fleet_api_system.py covers that path end to end)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.js.api import StorageType, StreamConfig

from robot_platform.messaging import streams
from robot_platform.ops import log_query, logs

WARN, INFO, ERROR = 30, 20, 40


async def fill(url: str, now: float) -> None:
    """60 records: r1 alternates info/warn (nodes nav/arm), r2 logs errors; the first half stamped 1000 s ago."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    config = StreamConfig(name=streams.LOGS_HUB_STREAM, subjects=["robots.*.logs.>"], storage=StorageType.MEMORY)
    await js.add_stream(config)
    for i in range(60):
        robot, level = ("r2", ERROR) if i % 5 == 4 else ("r1", WARN if i % 2 else INFO)
        stamp = now - (1000.0 if i < 30 else 10.0) + i * 0.01
        body = logs.encode_record(int(stamp), int((stamp % 1) * 1e9), level, "nav" if i % 3 else "arm", f"m{i}",
                                  "f.py", "fn", i)  # fmt: skip
        await js.publish(logs.log_subject(robot, logs.level_name(level)), body, headers={"Robot-Id": robot})
    await nc.close()


async def query(url: str, cap: int = log_query.SCAN_CAP, **args: Any) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        return await log_query.run_query(nc, log_query.parse_query(args), scan_cap=cap)
    finally:
        await nc.close()


def msgs(result: dict[str, Any]) -> list[str]:
    return [e["msg"] for e in result["entries"]]


def test_newest_matching_records_with_filters_and_cap(nats_server: Any) -> None:
    url = nats_server.url
    assert asyncio.run(query(url, limit=5)) == {"entries": [], "truncated": False}  # no stream yet
    now = time.time()
    asyncio.run(fill(url, now))
    r1_warn = [f"m{i}" for i in range(60) if i % 5 != 4 and i % 2]  # 24 records
    result = asyncio.run(query(url, robot="r1", level="warn", limit=5))
    assert msgs(result) == r1_warn[-5:] and result["truncated"] is False
    entry = result["entries"][-1]
    assert (entry["robot"], entry["level"], entry["line"], entry["function"]) == ("r1", "warn", 57, "fn")

    capped = asyncio.run(query(url, cap=7, robot="r1", level="warn", limit=5))
    assert msgs(capped) == r1_warn[-5:] and capped["truncated"] is True  # the newest, not the oldest
    capped = asyncio.run(query(url, cap=7, robot="r1", level="warn", limit=50))
    assert msgs(capped) == r1_warn[-7:] and capped["truncated"] is True

    errors = asyncio.run(query(url, level="error", limit=100))
    assert {e["robot"] for e in errors["entries"]} == {"r2"} and len(errors["entries"]) == 12
    arm = asyncio.run(query(url, robot="r1", node="arm", limit=100))
    assert msgs(arm) == [f"m{i}" for i in range(60) if i % 5 != 4 and i % 3 == 0]
    grep = asyncio.run(query(url, grep="^m5[0-9]$", level="debug", limit=100))
    assert msgs(grep) == [f"m{i}" for i in range(50, 60)]
    recent = asyncio.run(query(url, robot="r1", level="warn", since_s=500, limit=100))
    assert msgs(recent) == [m for m in r1_warn if int(m[1:]) >= 30]
    stamps = [e["stamp"] for e in recent["entries"]]
    assert stamps == sorted(stamps) and all(s > now - 500 for s in stamps)
