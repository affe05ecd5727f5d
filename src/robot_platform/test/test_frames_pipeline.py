"""frames.pipeline: on-demand publishing, latest wins, stale drop, budgets and adaptation together."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from robot_platform.frames.budget import AdaptiveQuality, Limits, build_ladder
from robot_platform.frames.convert import FrameEncoder, ImageConverter
from robot_platform.frames.leases import LeaseTable, decode_reply
from robot_platform.frames.meta import FrameMeta
from robot_platform.frames.pipeline import CameraConfig, FramePipeline

RNG = np.random.default_rng(7)
NOISE = RNG.integers(0, 255, (120, 160, 3), dtype=np.uint8)  # noisy: JPEG size reacts to quality


def frame(i: int, encoding: str = "rgb8"):
    stamp = SimpleNamespace(sec=1000 + i // 30, nanosec=(i % 30) * 33_000_000)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=stamp),
        encoding=encoding,
        width=160,
        height=120,
        step=480,
        data=np.roll(NOISE, i, axis=1).tobytes(),
        is_bigendian=0,
    )


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.sent.append((subject, body, headers))


DEFAULT_CAM = Limits(max_fps=15.0)
NO_LIMITS = Limits()


def make(cam_limits=DEFAULT_CAM, robot_limits=NO_LIMITS, cameras=("front",), **kw):
    sink = Sink()
    leases = LeaseTable(list(cameras), ttl_s=2.0, max_ttl_s=10.0)
    pipe = FramePipeline(
        "r1",
        [CameraConfig(c, f"/{c}/image_raw", cam_limits) for c in cameras],
        robot_limits,
        leases,
        sink,
        lambda: AdaptiveQuality(build_ladder(90, 30, 0.25, 20), down_after_s=0.3, up_after_s=1.0),
        0.0,
        encoder=FrameEncoder(ImageConverter(use_cv_bridge=False)),
        **kw,
    )
    return pipe, sink


def lease(pipe: FramePipeline, camera: str, now: float, **body) -> dict:
    return decode_reply(pipe.handle_lease_request(camera, json.dumps(body).encode(), now))


def run(pipe: FramePipeline, seconds: float, t0: float = 0.0, fps: float = 30.0, cameras=("front",)) -> float:
    now = t0
    for i in range(int(seconds * fps)):
        now = t0 + i / fps
        for c in cameras:
            pipe.offer(c, frame(i), now)
        pipe.step(now)
    return now


def test_nothing_is_encoded_or_sent_without_a_lease():
    pipe, sink = make()
    run(pipe, 2.0)
    assert sink.sent == []
    c = pipe.streams["front"].counters
    assert c.received == 60 and c.dropped_unleased == 60 and c.published == 0


def test_with_a_lease_frames_flow_at_max_fps_then_stop_after_expiry():
    pipe, sink = make()
    reply = lease(pipe, "front", 0.0, ttl_s=2.0)
    assert reply["ok"] and reply["subject"] == "robots.r1.frames.front" and reply["viewers"] == 1
    run(pipe, 2.5)
    assert 29 <= len(sink.sent) <= 31  # 15 fps for the 2 s of the lease
    subject, body, headers = sink.sent[-1]
    assert subject == "robots.r1.frames.front" and body[:2] == b"\xff\xd8"
    meta = FrameMeta.from_headers(headers)
    assert meta.robot_id == "r1" and meta.camera == "front" and meta.topic == "/front/image_raw"
    assert meta.seq == len(sink.sent) and (meta.width, meta.height, meta.encoding) == (160, 120, "rgb8")
    assert meta.stamp.startswith("100")
    assert pipe.wanted(2.5) == set()


def test_renewal_keeps_the_stream_and_release_stops_it():
    pipe, sink = make()
    lid = lease(pipe, "front", 0.0, ttl_s=1.0)["lease_id"]
    now = 0.0
    for k in range(4):  # renew every 0.5 s for 2 s
        now = run(pipe, 0.5, t0=k * 0.5)
        assert lease(pipe, "front", now, lease_id=lid, ttl_s=1.0)["ok"]
    sent = len(sink.sent)
    assert sent >= 28
    assert lease(pipe, "front", now, lease_id=lid, release=True)["released"]
    run(pipe, 1.0, t0=now + 0.01)
    assert len(sink.sent) == sent


def test_latest_wins_and_stale_frames_are_dropped():
    pipe, sink = make(cam_limits=Limits(), max_age_s=0.2)
    lease(pipe, "front", 0.0, ttl_s=5.0)
    for i in range(5):  # five frames arrive before the worker runs
        pipe.offer("front", frame(i), 0.01 * i)
    pipe.step(0.05)
    assert len(sink.sent) == 1
    assert FrameMeta.from_headers(sink.sent[0][2]).stamp == "1000.132000000"  # frame 4, the newest
    assert pipe.streams["front"].counters.dropped_replaced == 4
    pipe.offer("front", frame(5), 1.0)
    pipe.step(1.5)  # the worker was late: the frame is too old to show
    assert len(sink.sent) == 1 and pipe.streams["front"].counters.dropped_stale == 1


def test_quality_adapts_down_under_a_byte_budget_and_bytes_stay_within_it():
    probe, probe_sink = make()
    lease(probe, "front", 0.0, ttl_s=10.0)
    run(probe, 1.0)
    full_size = len(probe_sink.sent[-1][1])
    budget = full_size * 15 * 0.4  # 40 % of what 15 fps at the best quality needs
    pipe, sink = make(cam_limits=Limits(max_fps=15.0, max_bytes_per_s=budget))
    lease(pipe, "front", 0.0, ttl_s=10.0)
    run(pipe, 8.0)
    level = pipe.streams["front"].adapt.level
    assert level.quality < 90 or level.scale < 1.0
    late = [h for _, _, h in sink.sent if int(h["Rp-Sent-Ns"]) > 0][-30:]
    assert {int(h["Rp-Frame-Quality"]) for h in late} != {90}
    sent_bytes = sum(len(b) for _, b, _ in sink.sent)
    assert sent_bytes <= budget * 8.0 + budget * 0.5 + full_size
    # once adapted, the frame rate recovers close to max_fps
    tail = pipe.streams["front"].counters
    assert tail.published >= 0.6 * 15 * 8


def test_two_cameras_share_the_robot_budget():
    pipe, sink = make(cam_limits=Limits(max_fps=30.0), robot_limits=Limits(max_fps=20.0), cameras=("a", "b"))
    lease(pipe, "a", 0.0, ttl_s=10.0)
    lease(pipe, "b", 0.0, ttl_s=10.0)
    run(pipe, 5.0, cameras=("a", "b"))
    per = {c: sum(1 for s, _, _ in sink.sent if s.endswith("." + c)) for c in ("a", "b")}
    assert 95 <= per["a"] + per["b"] <= 102
    assert min(per.values()) >= 40  # neither starves


def test_bad_frames_and_bad_requests_are_counted_and_answered():
    pipe, sink = make()
    lease(pipe, "front", 0.0)
    pipe.offer("front", frame(0, encoding="bayer_grbg8"), 0.0)
    pipe.step(0.0)
    assert sink.sent == [] and pipe.streams["front"].counters.errors == {"unsupported_encoding": 1}
    bad = decode_reply(pipe.handle_lease_request("front", b"{oops", 0.0))
    assert not bad["ok"] and bad["error"] == "bad_lease_request"
    unknown = decode_reply(pipe.handle_lease_request("side", b"", 0.0))
    assert not unknown["ok"] and "no such camera" in unknown["message"]
    assert pipe.stats()["leases"]["refused"] == 2


def test_step_wakes_for_lease_expiry_and_budget():
    pipe, _ = make()
    assert pipe.step(0.0) == pytest.approx(1.0)
    lease(pipe, "front", 0.0, ttl_s=0.5)
    assert pipe.step(0.0) == pytest.approx(0.501)
    pipe.offer("front", frame(0), 0.0)
    pipe.step(0.0)
    pipe.offer("front", frame(1), 0.01)
    assert 0.0 < pipe.step(0.01) < 0.06  # next frame token of 15 fps
