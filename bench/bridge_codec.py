#!/usr/bin/env python3
"""Codec benchmark: our msgpack codec vs rosbridge-style JSON (base64 for uint8[]), same run, same messages.

For nav_msgs/Odometry, sensor_msgs/LaserScan (720 beams) and a 640x480 rgb8 sensor_msgs/Image:
encode (ROS message -> bytes), decode (bytes -> validated ROS message) and payload size.

The JSON side follows rosbridge's wire format: the message as a JSON object, uint8[] as a base64
string, floats as JSON numbers, decoded with json.loads + our validating from_dict (so decoding does
the same checks; only the wire format differs).

    . scripts/env.sh && PYTHONPATH=src/robot_platform python bench/bridge_codec.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image, LaserScan

from robot_platform.messaging.codec import Codec


def sample_messages() -> dict[str, Any]:
    odom = Odometry()
    odom.header.frame_id = "odom"
    odom.header.stamp.sec = 1_700_000_000
    odom.child_frame_id = "base_link"
    odom.pose.pose.position.x = 1.234
    odom.pose.covariance[0] = 0.01
    odom.twist.twist.linear.x = 0.5
    scan = LaserScan(angle_min=-math.pi, angle_max=math.pi, angle_increment=2 * math.pi / 720, range_max=30.0)
    scan.header.frame_id = "laser"
    scan.ranges = [1.0 + (i % 97) * 0.1 for i in range(720)]
    scan.intensities = [100.0] * 720
    image = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
    image.header.frame_id = "camera"
    image.data = bytes(i % 251 for i in range(640 * 480 * 3))
    return {"Odometry": odom, "LaserScan (720)": scan, "Image 640x480 rgb8": image}


def _b64_bytes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _b64_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_b64_bytes(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def json_encode(codec: Codec, msg: Any) -> bytes:
    return json.dumps(_b64_bytes(codec.to_dict(msg)), separators=(",", ":")).encode()


def json_decode(codec: Codec, cls: type, body: bytes, bytes_fields: tuple[str, ...]) -> Any:
    data = json.loads(body)
    for name in bytes_fields:  # rosbridge clients know which fields are base64 from the type
        data[name] = base64.b64decode(data[name])
    return codec.from_dict(cls, data)


def per_call_us(fn: Callable[[], Any], seconds: float) -> tuple[float, int]:
    """Median per-call time over rounds filling ``seconds``; returns (microseconds, calls)."""
    fn()  # warm caches (type layouts)
    rounds, calls = [], 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rounds) < 3:
        t0 = time.perf_counter()
        n = 0
        while n < 5 or time.perf_counter() - t0 < seconds / 20:
            fn()
            n += 1
        rounds.append((time.perf_counter() - t0) / n)
        calls += n
    return statistics.median(rounds) * 1e6, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--smoke", action="store_true", help="a quick pass (make test): every message round-trips")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 0.02
    codec = Codec(max_payload_bytes=16 * 1024 * 1024)
    print(f"{'message':<20} {'format':<8} {'bytes':>9} {'encode us':>10} {'decode us':>10}")
    ratios = []
    for name, msg in sample_messages().items():
        cls = type(msg)
        bytes_fields = ("data",) if cls is Image else ()
        mp_body = codec.encode(msg)
        js_body = json_encode(codec, msg)
        assert codec.decode(cls, mp_body) == msg
        assert json_decode(codec, cls, js_body, bytes_fields) == msg
        mp_enc, _ = per_call_us(lambda m=msg: codec.encode(m), args.seconds)
        mp_dec, _ = per_call_us(lambda b=mp_body, c=cls: codec.decode(c, b), args.seconds)
        js_enc, _ = per_call_us(lambda m=msg: json_encode(codec, m), args.seconds)
        js_dec, _ = per_call_us(lambda b=js_body, c=cls, f=bytes_fields: json_decode(codec, c, b, f), args.seconds)
        print(f"{name:<20} {'msgpack':<8} {len(mp_body):>9} {mp_enc:>10.1f} {mp_dec:>10.1f}")
        print(f"{name:<20} {'json+b64':<8} {len(js_body):>9} {js_enc:>10.1f} {js_dec:>10.1f}")
        ratios.append((name, len(js_body) / len(mp_body), js_enc / mp_enc, js_dec / mp_dec))
    print("\nJSON / msgpack ratios (>1: msgpack is smaller / faster)")
    print(f"{'message':<20} {'size':>6} {'encode':>7} {'decode':>7}")
    for name, size, enc, dec in ratios:
        print(f"{name:<20} {size:>6.2f} {enc:>7.2f} {dec:>7.2f}")


if __name__ == "__main__":
    main()
