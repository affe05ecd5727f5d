#!/usr/bin/env python3
"""Capture benchmark: robot_agent's capture of N seconds of /odom (20 Hz) + /scan (10 Hz, 360 beams),
written as MCAP (zstd chunks, what the capture action sends) vs the former msgpack layout (CDR in a map).

Messages are the simulator's shapes, serialized with rclpy; the buffer and build_capture are the agent's
own. Reports file bytes and the time build_capture takes (median of the runs) on this machine.

    . scripts/env.sh && PYTHONPATH=src/robot_platform python bench/capture_mcap.py [--seconds 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import msgpack
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from sensor_msgs.msg import LaserScan

from robot_platform.ops.actions import RollingBuffer, build_capture
from robot_platform.recording.msgdefs import MessageDefinitions


def fill(buffer: RollingBuffer, seconds: float, now: float) -> None:
    for i in range(int(seconds * 20)):
        msg = Odometry()
        msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
        msg.pose.pose.position.x = math.cos(i / 50)
        buffer.add("/odom", bytes(serialize_message(msg)), now - seconds + i / 20)
    for i in range(int(seconds * 10)):
        scan = LaserScan(ranges=[2.0 + math.sin(i / 7 + k / 30) for k in range(360)], angle_max=math.pi)
        scan.header.frame_id = "laser"
        buffer.add("/scan", bytes(serialize_message(scan)), now - seconds + i / 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="2 s of messages, 1 run: does the path work?")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.runs = 2.0, 1
    types = {"/odom": "nav_msgs/msg/Odometry", "/scan": "sensor_msgs/msg/LaserScan"}
    definitions = MessageDefinitions()
    buffer = RollingBuffer(args.seconds + 5, 512 * 1024 * 1024)
    now = time.time()
    fill(buffer, args.seconds, now)
    durations, size, count = [], 0, 0
    for _ in range(args.runs):
        start = time.perf_counter()
        result = build_capture("r1", buffer, types, list(types), args.seconds, 1 << 30, definitions)
        durations.append(time.perf_counter() - start)
        size, count = result["bytes"], result["messages"]
    entries = buffer.snapshot(list(types), args.seconds)
    old = msgpack.packb({"topics": types, "messages": [{"t": t, "topic": k, "cdr": d} for t, k, d in entries]},
                        use_bin_type=True)  # fmt: skip
    print(
        f"{args.seconds:g} s, {count} messages: MCAP {size} bytes in {statistics.median(durations) * 1000:.1f} ms "
        f"(median of {args.runs}); former msgpack layout {len(old)} bytes"
    )
    if count == 0 or size == 0:
        print("capture_mcap: the capture holds no message", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
