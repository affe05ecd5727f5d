"""ROS 2 node ``frame_publisher``: camera frames to NATS as JPEG, on demand, within a budget.

Thin glue over :class:`~robot_platform.frames.pipeline.FramePipeline` (logic, no rclpy) and the
bridge's :class:`~robot_platform.messaging.nats_link.NatsLink` (NATS thread).

Parameters (all read-only; the tables PARAMS and CAMERA_PARAMS below, repeated in config/robot.yaml):
    robot_id (string, required)       robot id, a subject token
    nats_url (string)                 NATS server (the robot's local one)
    nats_user, nats_password_file     NATS credentials ('' = none; the password is never logged)
    cameras.names (string[])          camera names (subject tokens); for each <n>:
      cameras.<n>.topic (string)      ROS topic (relative names take the node's namespace)
      cameras.<n>.type (string)       'image' (sensor_msgs/Image) or 'compressed' (CompressedImage)
      cameras.<n>.max_fps (double)    0 = unlimited
      cameras.<n>.max_kbps (double)   kilobytes/s (1000 bytes); 0 = unlimited
    robot.max_fps, robot.max_kbps     shared by all cameras of the robot; 0 = unlimited
    jpeg_quality_max, jpeg_quality_min, jpeg_quality_step (int)   adaptive quality ladder
    scale_min (double)                smallest output scale the adaptation may use (1, 0.5, 0.25...)
    adapt_down_after_s, adapt_up_after_s (double)  how long over budget / with room before a step
    lease_ttl_s, lease_max_ttl_s (double), max_viewers (int)      viewer leases
    max_age_s (double)                a frame older than this when its turn comes is dropped
    depth_max (int)                   value shown white for 16UC1/mono16; 0 = per-frame maximum
    stats_period_s (double)           period of the counters log line while streaming
Subscriptions: each camera topic, sensor-data QoS (best effort, depth 1), only while leased.
NATS: publishes JPEG on robots.<id>.frames.<camera> (headers: frames/meta.py); answers lease requests
on robots.<id>.frames.<camera>.lease (frames/leases.py).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

from robot_platform.common.node_main import spin_node
from robot_platform.common.params import REQUIRED, Param, ParamTable, declare_params
from robot_platform.exceptions import ConfigError
from robot_platform.frames.budget import AdaptiveQuality, Limits, build_ladder
from robot_platform.frames.convert import FrameEncoder, ImageConverter, have_cv_bridge
from robot_platform.frames.leases import LeaseTable
from robot_platform.frames.pipeline import CameraConfig, FramePipeline
from robot_platform.messaging import subjects
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.nats_link import NatsLink

MSG_TYPES = {"image": Image, "compressed": CompressedImage}
WORKER_JOIN_TIMEOUT_S = 2.0

PARAMS: tuple[Param, ...] = (
    Param("robot_id", str, REQUIRED, "robot id (subject token)"),
    Param("nats_url", str, "nats://127.0.0.1:4222", "NATS server URL (the robot's local server)"),
    Param("nats_user", str, "", "NATS user name; empty = no authentication"),
    Param("nats_password_file", str, "", "file holding the NATS password (never logged)"),
    Param("cameras.names", list, ("front",), "camera names (subject tokens)"),
    # A robot-wide budget is what keeps frames from crowding telemetry out of the uplink.
    Param("robot.max_fps", float, 30.0, "frames/s of all cameras together; 0 = unlimited", (0.0, 120.0)),
    Param("robot.max_kbps", float, 1000.0, "kB/s of all cameras together; 0 = unlimited", (0.0, 1e6)),
    Param("jpeg_quality_max", int, 80, "JPEG quality when the budget allows", (1, 95)),
    Param("jpeg_quality_min", int, 40, "lowest JPEG quality before scaling down", (1, 95)),
    Param("jpeg_quality_step", int, 10, "quality change per adaptation step", (1, 50)),
    Param("scale_min", float, 0.25, "smallest output scale (1, 0.5, 0.25, 0.125)", (0.1, 1.0)),
    Param("adapt_down_after_s", float, 0.5, "seconds over budget before stepping down", (0.0, 60.0)),
    Param("adapt_up_after_s", float, 2.0, "seconds with room before stepping up", (0.0, 600.0)),
    Param("lease_ttl_s", float, 5.0, "lease ttl granted when a request names none", (0.5, 3600.0)),
    Param("lease_max_ttl_s", float, 30.0, "longest ttl granted", (0.5, 3600.0)),
    Param("max_viewers", int, 16, "live leases per camera", (1, 1000)),
    Param("max_age_s", float, 0.5, "drop a frame that waited longer than this", (0.01, 60.0)),
    Param("depth_max", int, 0, "16-bit value shown white; 0 = per-frame max", (0, 65535)),
    Param("stats_period_s", float, 10.0, "period of the counters log line", (0.5, 3600.0)),
)
CAMERA_PARAMS: tuple[Param, ...] = (  # cameras.<name>.<param>
    Param("topic", str, "camera/image_raw", "ROS image topic"),
    Param("type", str, "image", "'image' (sensor_msgs/Image) or 'compressed'"),
    Param("max_fps", float, 15.0, "frames/s; 0 = unlimited", (0.0, 120.0)),
    Param("max_kbps", float, 500.0, "kB/s; 0 = unlimited", (0.0, 1e6)),
)
TABLE = ParamTable("frame_publisher", PARAMS, {"cameras": CAMERA_PARAMS})


class FramePublisherNode(Node):
    """See the module docstring for parameters, subscriptions and subjects."""

    def __init__(self) -> None:
        super().__init__("frame_publisher")
        p = declare_params(self, PARAMS)
        robot_id = subjects.check_robot_id(p["robot_id"])
        url, user, password_file = p["nats_url"], p["nats_user"], p["nats_password_file"]
        robot_limits = Limits(p["robot.max_fps"], 1000 * p["robot.max_kbps"])
        q_max, q_min, q_step = p["jpeg_quality_max"], p["jpeg_quality_min"], p["jpeg_quality_step"]
        scale_min, down_s, up_s = p["scale_min"], p["adapt_down_after_s"], p["adapt_up_after_s"]
        ttl, max_ttl, max_viewers = p["lease_ttl_s"], p["lease_max_ttl_s"], p["max_viewers"]
        max_age, depth_max = p["max_age_s"], p["depth_max"]
        self._stats_period = p["stats_period_s"]
        if q_min > q_max:
            raise ConfigError("jpeg_quality_min", q_min, f"must not exceed jpeg_quality_max ({q_max})")
        if ttl > max_ttl:
            raise ConfigError("lease_ttl_s", ttl, f"must not exceed lease_max_ttl_s ({max_ttl})")

        cameras = self._read_cameras(p["cameras.names"])
        self._types = {c.name: MSG_TYPES["compressed" if c.compressed else "image"] for c in cameras}
        ladder = build_ladder(q_max, q_min, scale_min, q_step)
        self.pipeline = FramePipeline(
            robot_id,
            cameras,
            robot_limits,
            LeaseTable([c.name for c in cameras], ttl, max_ttl, max_viewers),
            self._publish,
            lambda: AdaptiveQuality(ladder, down_after_s=down_s, up_after_s=up_s),
            time.monotonic(),
            encoder=FrameEncoder(ImageConverter(depth_max=depth_max)),
            max_age_s=max_age,
            log=self.get_logger(),
        )
        self._qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,  # latest wins from the DDS queue on
            reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability,
        )
        self._subs: dict[str, Any] = {}
        self._sync_guard = self.create_guard_condition(self._sync_subscriptions)
        self._wake = threading.Event()
        self._stop = threading.Event()
        password = Path(password_file).read_text().strip() if password_file else ""
        self._link = NatsLink(
            url,
            lambda subject, headers, data: None,
            name=f"frame_publisher_{robot_id}",
            outbox_capacity=2 * len(cameras),  # frames are never worth queueing: drop-oldest beyond this
            credentials=Credentials(user, password, robot_id),
            log=self.get_logger(),
            on_connected=self._on_connected,
        )
        self._link.start()
        self._worker = threading.Thread(target=self._work, name="frame_publisher-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"frame_publisher {robot_id}: cameras "
            + ", ".join(f"{c.name}={self.resolve_topic_name(c.topic)}" for c in cameras)
            + f"; NATS {url}; cv_bridge {'yes' if have_cv_bridge() else 'no (numpy conversion)'}"
        )

    # ------------------------------------------------------------------ parameters
    def _read_cameras(self, names: list[str]) -> list[CameraConfig]:
        if not names:
            raise ConfigError("cameras.names", names, "name at least one camera")
        cameras = []
        for name in names:
            subjects.check_token(name)
            pre = f"cameras.{name}"
            c = declare_params(self, CAMERA_PARAMS, pre)
            if c["type"] not in MSG_TYPES:
                raise ConfigError(f"{pre}.type", c["type"], f"one of {sorted(MSG_TYPES)}")
            limits = Limits(c["max_fps"], 1000 * c["max_kbps"])
            cameras.append(CameraConfig(name, c["topic"], limits, compressed=c["type"] == "compressed"))
        return cameras

    # ------------------------------------------------------------------ ROS side (executor thread)
    def _sync_subscriptions(self) -> None:
        """Subscribe to leased cameras, unsubscribe the others (so idle cameras cost no deserializing)."""
        wanted = self.pipeline.wanted(time.monotonic())
        for name in list(self._subs):
            if name not in wanted:
                self.destroy_subscription(self._subs.pop(name))
                self.get_logger().info(f"camera {name}: no viewer left, unsubscribed")
        for name in sorted(wanted - set(self._subs)):
            stream = self.pipeline.streams[name]
            self._subs[name] = self.create_subscription(
                self._types[name],
                stream.config.topic,
                lambda msg, name=name: self._on_image(name, msg),
                self._qos,
                qos_overriding_options=QoSOverridingOptions.with_default_policies(),
            )
            self.get_logger().info(f"camera {name}: viewer leased, subscribed to {stream.config.topic}")

    def _on_image(self, camera: str, msg: Any) -> None:
        self.pipeline.offer(camera, msg, time.monotonic())
        self._wake.set()

    # ------------------------------------------------------------------ NATS side (link thread)
    async def _on_connected(self, nc: Any) -> None:
        """Subscribe the lease subjects (again after every reconnect)."""
        for stream in self.pipeline.streams.values():
            await nc.subscribe(stream.lease_subject, cb=self._on_lease)

    async def _on_lease(self, msg: Any) -> None:
        camera = msg.subject.split(".")[3]  # robots.<id>.frames.<camera>.lease
        reply = self.pipeline.handle_lease_request(camera, msg.data, time.monotonic())
        if msg.reply:
            await msg.respond(reply)
        self._wake.set()

    def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self._link.publish(subject, body, headers)

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        subscribed: set[str] = set()
        next_stats = time.monotonic() + self._stats_period
        while not self._stop.is_set():
            now = time.monotonic()
            wanted = self.pipeline.wanted(now)
            if wanted != subscribed:
                subscribed = wanted
                self._sync_guard.trigger()
            wait = self.pipeline.step(now, time.monotonic)
            if now >= next_stats:
                next_stats = now + self._stats_period
                if wanted:
                    self.get_logger().info(f"frames: {self.pipeline.stats()} nats: {self._link.counters}")
            self._wake.wait(timeout=wait)
            self._wake.clear()

    def close(self) -> None:
        """Stop the worker and the NATS link (called by spin_node before destroy_node)."""
        self._stop.set()
        self._wake.set()
        self._worker.join(WORKER_JOIN_TIMEOUT_S)
        self._link.stop()


def main(args: list[str] | None = None) -> int:
    return spin_node(FramePublisherNode, args)


if __name__ == "__main__":
    sys.exit(main())
