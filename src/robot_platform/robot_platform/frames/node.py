"""ROS 2 node ``frame_publisher``: camera frames to NATS as JPEG, on demand, within a budget.

Thin glue over :class:`~robot_platform.frames.pipeline.FramePipeline` (logic, no rclpy) and the
bridge's :class:`~robot_platform.messaging.nats_link.NatsLink` (NATS thread).

Parameters (all read-only, declared with descriptors; defaults in config/robot.yaml):
    robot_id (string)                 robot id, a subject token
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

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

from robot_platform.common.node_main import spin_node
from robot_platform.exceptions import ConfigError
from robot_platform.messaging import subjects
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.nats_link import NatsLink

from .budget import AdaptiveQuality, Limits, build_ladder
from .convert import FrameEncoder, ImageConverter, have_cv_bridge
from .leases import LeaseTable
from .pipeline import CameraConfig, FramePipeline

S, INT, D, SA = (
    ParameterType.PARAMETER_STRING,
    ParameterType.PARAMETER_INTEGER,
    ParameterType.PARAMETER_DOUBLE,
    ParameterType.PARAMETER_STRING_ARRAY,
)
MSG_TYPES = {"image": Image, "compressed": CompressedImage}
WORKER_JOIN_TIMEOUT_S = 2.0


class FramePublisherNode(Node):
    """See the module docstring for parameters, subscriptions and subjects."""

    def __init__(self) -> None:
        super().__init__("frame_publisher")
        p = self._param
        robot_id = subjects.check_robot_id(p("robot_id", "r1", S, "robot id (subject token)"))
        url = p("nats_url", "nats://127.0.0.1:4222", S, "NATS server URL (the robot's local server)")
        user = p("nats_user", "", S, "NATS user name; empty = no authentication")
        password_file = p("nats_password_file", "", S, "file holding the NATS password (never logged)")
        robot_limits = Limits(
            p("robot.max_fps", 0.0, D, "frames/s of all cameras together; 0 = unlimited", (0.0, 120.0)),
            1000 * p("robot.max_kbps", 0.0, D, "kB/s of all cameras together; 0 = unlimited", (0.0, 1e6)),
        )
        q_max = p("jpeg_quality_max", 80, INT, "JPEG quality when the budget allows", (1, 95))
        q_min = p("jpeg_quality_min", 40, INT, "lowest JPEG quality before scaling down", (1, 95))
        q_step = p("jpeg_quality_step", 10, INT, "quality change per adaptation step", (1, 50))
        scale_min = p("scale_min", 0.25, D, "smallest output scale (1, 0.5, 0.25, 0.125)", (0.1, 1.0))
        down_s = p("adapt_down_after_s", 0.5, D, "seconds over budget before stepping down", (0.0, 60.0))
        up_s = p("adapt_up_after_s", 2.0, D, "seconds with room before stepping up", (0.0, 600.0))
        ttl = p("lease_ttl_s", 5.0, D, "lease ttl granted when a request names none", (0.5, 3600.0))
        max_ttl = p("lease_max_ttl_s", 30.0, D, "longest ttl granted", (0.5, 3600.0))
        max_viewers = p("max_viewers", 16, INT, "live leases per camera", (1, 1000))
        max_age = p("max_age_s", 0.5, D, "drop a frame that waited longer than this", (0.01, 60.0))
        depth_max = p("depth_max", 0, INT, "16-bit value shown white; 0 = per-frame max", (0, 65535))
        self._stats_period = p("stats_period_s", 10.0, D, "period of the counters log line", (0.5, 3600.0))
        if q_min > q_max:
            raise ConfigError("jpeg_quality_min", q_min, f"must not exceed jpeg_quality_max ({q_max})")
        if ttl > max_ttl:
            raise ConfigError("lease_ttl_s", ttl, f"must not exceed lease_max_ttl_s ({max_ttl})")

        cameras = self._read_cameras()
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
    def _param(
        self, name: str, default: Any, ptype: int, description: str, rng: tuple[float, float] | None = None
    ) -> Any:
        desc = ParameterDescriptor(type=ptype, description=description, read_only=True)
        if rng and ptype == INT:
            desc.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=1)]
        elif rng:
            desc.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]))]
        return self.declare_parameter(name, default, desc).value

    def _read_cameras(self) -> list[CameraConfig]:
        desc = ParameterDescriptor(type=SA, description="camera names (subject tokens)", read_only=True)
        names = [n for n in (self.declare_parameter("cameras.names", ["front"], desc).value or []) if n]
        if not names:
            raise ConfigError("cameras.names", names, "name at least one camera")
        cameras = []
        for name in names:
            subjects.check_token(name)
            p, pre = self._param, f"cameras.{name}"
            topic = p(f"{pre}.topic", "camera/image_raw", S, "ROS image topic")
            kind = p(f"{pre}.type", "image", S, "'image' (sensor_msgs/Image) or 'compressed'")
            if kind not in MSG_TYPES:
                raise ConfigError(f"{pre}.type", kind, f"one of {sorted(MSG_TYPES)}")
            limits = Limits(
                p(f"{pre}.max_fps", 15.0, D, "frames/s; 0 = unlimited", (0.0, 120.0)),
                1000 * p(f"{pre}.max_kbps", 0.0, D, "kB/s; 0 = unlimited", (0.0, 1e6)),
            )
            cameras.append(CameraConfig(name, topic, limits, compressed=kind == "compressed"))
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
