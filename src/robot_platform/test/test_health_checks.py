"""Each check kind against cached data and an injected clock (no ROS graph)."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import pytest
from py_trees.common import Status

from robot_platform.health import checks as c
from robot_platform.health import system_checks as sc
from robot_platform.health import topic_checks as tc
from robot_platform.health import value_checks as vc
from robot_platform.health.fault_state import SEVERITY_CRITICAL, SEVERITY_WARN, FaultSpec, FaultState
from robot_platform.health.sources import (
    DataHub,
    GraphCache,
    LinkStatus,
    TopicFeed,
    extract_battery,
    extract_imu,
    extract_odometry,
    extract_twist,
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def spec(debounce: float = 0.0, clear: float = 0.0) -> FaultSpec:
    return FaultSpec("TEST", SEVERITY_WARN, debounce, clear)


def v3(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> NS:
    return NS(x=x, y=y, z=z)


def odom(speed: float, x: float = 0.0) -> NS:
    return NS(twist=NS(twist=NS(linear=v3(speed), angular=v3())), pose=NS(pose=NS(position=v3(x))))


def twist(speed: float) -> NS:
    return NS(linear=v3(speed), angular=v3())


def imu(w: float = 0.0, a: float = 9.81, qw: float = 1.0) -> NS:
    return NS(orientation=NS(x=0.0, y=0.0, z=0.0, w=qw), angular_velocity=v3(z=w), linear_acceleration=v3(z=a))


def tick(check: c.HealthCheck, clock: Clock, dt: float = 0.0) -> Status:
    clock.t += dt
    check.tick_once()
    return check.status


def test_topic_silence_start_up_grace_then_message_then_silence() -> None:
    clock, feed = Clock(), TopicFeed("scan", "sensor_msgs/msg/LaserScan")
    check = tc.TopicSilenceCheck("scan_silent", spec(), clock, feed=feed, timeout_s=1.0)
    assert tick(check, clock) is Status.SUCCESS  # first tick starts the grace period
    assert tick(check, clock, 1.1) is Status.FAILURE and "never received" in check.last.message
    feed.on_message(NS(), clock())
    assert tick(check, clock, 0.1) is Status.SUCCESS
    assert tick(check, clock, 0.85) is Status.SUCCESS
    assert tick(check, clock, 0.1) is Status.FAILURE
    assert check.fault.state is FaultState.ACTIVE and check.last.values["age_s"] == "1.05"


def test_topic_rate_with_hysteresis() -> None:
    clock, feed = Clock(), TopicFeed("scan", "x/msg/Y")
    check = tc.TopicRateCheck("scan_rate", spec(), clock, feed=feed, min_rate_hz=5.0, clear_rate_hz=7.0, window_s=1.0)

    def feed_for(seconds: float, hz: float) -> None:
        for _ in range(round(seconds * hz)):
            clock.t += 1.0 / hz
            feed.on_message(NS(), clock())

    assert tick(check, clock) is Status.SUCCESS  # still measuring
    feed_for(1.0, 10.0)
    assert tick(check, clock) is Status.SUCCESS
    feed_for(1.0, 4.0)
    assert tick(check, clock) is Status.FAILURE
    feed_for(1.0, 6.0)  # above min but below clear: stays raised
    assert tick(check, clock) is Status.FAILURE
    feed_for(1.0, 8.0)
    assert tick(check, clock) is Status.SUCCESS


def test_speed_drop_only_under_a_fresh_command() -> None:
    clock = Clock()
    o = TopicFeed("odom", "nav_msgs/msg/Odometry", extract_odometry)
    cmd = TopicFeed("cmd_vel", "geometry_msgs/msg/Twist", extract_twist)
    check = vc.SpeedDropCheck(
        "speed",
        spec(debounce=2.0, clear=0.5),
        clock,
        odom=o,
        cmd=cmd,
        ratio=0.5,
        clear_ratio=0.6,
        min_command=0.1,
        command_timeout_s=0.5,
    )
    o.on_message(odom(0.0), clock())
    assert tick(check, clock) is Status.SUCCESS and check.last.message == "no motion command"

    def drive(commanded: float, actual: float, seconds: float) -> Status:
        for _ in range(round(seconds / 0.1)):
            cmd.on_message(twist(commanded), clock())
            o.on_message(odom(actual), clock())
            tick(check, clock, 0.1)
        return check.status

    assert drive(0.5, 0.2, 1.9) is Status.RUNNING  # PENDING: below threshold for less than 2 s
    assert drive(0.5, 0.2, 0.3) is Status.FAILURE
    assert check.fault.state is FaultState.ACTIVE
    assert check.last.values["commanded"] == "0.500" and check.last.values["actual"] == "0.2"
    assert drive(0.5, 0.27, 1.0) is Status.FAILURE  # above ratio 0.5 but below clear_ratio 0.6: still raised
    assert drive(0.5, 0.45, 0.7) is Status.SUCCESS
    assert check.fault.raise_count == 1


def test_speed_drop_ignores_a_stale_command() -> None:
    clock = Clock()
    o = TopicFeed("odom", "nav_msgs/msg/Odometry", extract_odometry)
    cmd = TopicFeed("cmd_vel", "geometry_msgs/msg/Twist", extract_twist)
    check = vc.SpeedDropCheck("speed", spec(), clock, odom=o, cmd=cmd, command_timeout_s=0.5)
    cmd.on_message(twist(1.0), clock())
    clock.t += 1.0
    o.on_message(odom(0.0), clock())
    assert tick(check, clock) is Status.SUCCESS


def test_battery_low_escalates_to_critical_and_clears_with_hysteresis() -> None:
    clock, feed = Clock(), TopicFeed("battery_state", "sensor_msgs/msg/BatteryState", extract_battery)
    check = vc.BatteryCheck("battery", spec(), clock, feed=feed, low=0.2, critical=0.1, hysteresis=0.03)

    def level(p: float) -> Status:
        feed.on_message(NS(percentage=p, voltage=24.0), clock())
        return tick(check, clock, 0.1)

    assert level(float("nan")) is Status.SUCCESS and check.last.message == "battery level unknown"
    assert level(0.5) is Status.SUCCESS
    assert level(0.19) is Status.FAILURE and check.fault.severity == SEVERITY_WARN
    assert level(0.09) is Status.FAILURE and check.fault.severity == SEVERITY_CRITICAL
    assert level(0.11) is Status.FAILURE and check.fault.severity == SEVERITY_CRITICAL  # within hysteresis
    assert level(0.14) is Status.FAILURE and check.fault.severity == SEVERITY_WARN
    assert level(0.21) is Status.FAILURE  # above low but not above low + hysteresis
    assert level(0.24) is Status.SUCCESS


def _noisy_drain(check: vc.BatteryCheck, feed: TopicFeed, clock: Clock) -> int:
    """A battery draining slowly through the threshold, with +-1.5 % measurement noise."""
    for i in range(600):
        p = 0.23 - 0.0001 * i + 0.015 * math.sin(i * 1.3)
        feed.on_message(NS(percentage=p, voltage=24.0), clock())
        tick(check, clock, 0.1)
    return check.fault.raise_count


def test_battery_noise_around_threshold_raises_once() -> None:
    clock, feed = Clock(), TopicFeed("battery_state", "sensor_msgs/msg/BatteryState", extract_battery)
    check = vc.BatteryCheck("battery", spec(debounce=1.0, clear=2.0), clock, feed=feed, low=0.2, hysteresis=0.03)
    assert _noisy_drain(check, feed, clock) == 1
    assert check.fault.state is FaultState.ACTIVE


def test_battery_noise_without_debounce_or_hysteresis_would_flap() -> None:
    """The control experiment: the same signal with no time or value hysteresis raises many alerts."""
    clock, feed = Clock(), TopicFeed("battery_state", "sensor_msgs/msg/BatteryState", extract_battery)
    check = vc.BatteryCheck("battery", spec(), clock, feed=feed, low=0.2, hysteresis=0.0)
    assert _noisy_drain(check, feed, clock) > 10


def test_imu_anomaly_range_nan_and_frozen() -> None:
    clock, feed = Clock(), TopicFeed("imu", "sensor_msgs/msg/Imu", extract_imu)
    check = vc.ImuAnomalyCheck("imu", spec(), clock, feed=feed, max_angular_velocity=5.0, frozen_s=1.0)
    assert tick(check, clock) is Status.SUCCESS  # no data: silence is another check's business
    feed.on_message(imu(w=0.1), clock())
    assert tick(check, clock, 0.05) is Status.SUCCESS
    feed.on_message(imu(w=7.0), clock())
    assert tick(check, clock, 0.05) is Status.FAILURE and "angular velocity" in check.last.message
    feed.on_message(imu(w=0.2, qw=float("nan")), clock())
    assert tick(check, clock, 0.05) is Status.FAILURE and "orientation not finite" in check.last.message
    for i in range(10):
        clock.t += 0.05
        feed.on_message(imu(w=0.01 * i), clock())
    assert tick(check, clock) is Status.SUCCESS
    for _ in range(25):  # identical samples for 1.25 s
        clock.t += 0.05
        feed.on_message(imu(w=0.3), clock())
        tick(check, clock)
    assert check.status is Status.FAILURE and "frozen" in check.last.message


def test_localization_jump_and_bounds() -> None:
    clock, feed = Clock(), TopicFeed("odom", "nav_msgs/msg/Odometry", extract_odometry)
    check = vc.LocalizationAnomalyCheck("loc", spec(), clock, feed=feed, max_jump_m=1.0, max_abs_m=100.0)
    feed.on_message(odom(0.0, x=1.0), clock())
    assert tick(check, clock, 0.1) is Status.SUCCESS
    feed.on_message(odom(0.0, x=1.5), clock())
    assert tick(check, clock, 0.1) is Status.SUCCESS
    feed.on_message(odom(0.0, x=5.0), clock())
    assert tick(check, clock, 0.1) is Status.FAILURE and "jumped" in check.last.message
    feed.on_message(odom(0.0, x=500.0), clock())
    assert tick(check, clock, 0.1) is Status.FAILURE and "outside" in check.last.message


def test_nodes_missing() -> None:
    clock, graph = Clock(), GraphCache()
    check = sc.NodesMissingCheck("nodes", spec(), clock, graph=graph, expected=["robot_sim", "/ns/bridge"])
    assert tick(check, clock) is Status.SUCCESS  # graph not read yet
    graph.set(["/robot_sim"], clock())
    assert tick(check, clock) is Status.FAILURE and check.last.values["missing"] == "/ns/bridge"
    graph.set(["/robot_sim", "/ns/bridge", "/other"], clock())
    assert tick(check, clock) is Status.SUCCESS


def test_nats_link_fed_by_the_client() -> None:
    clock, link = Clock(), LinkStatus("nats")
    check = sc.LinkCheck("nats", spec(), clock, link=link)
    assert tick(check, clock) is Status.FAILURE and "never connected" in check.last.message
    link.set(True, clock())
    assert tick(check, clock, 1.0) is Status.SUCCESS
    link.set(False, clock(), "disconnected, reconnecting")
    assert tick(check, clock, 1.0) is Status.FAILURE and check.last.values["for_s"] == "1"


def test_host_resources_sampled_with_hysteresis_and_missing_sensor() -> None:
    clock, values = Clock(), {"cpu": 50.0, "temperature": None}
    sampler = lambda resource, path: values[resource]  # noqa: E731
    check = sc.HostResourceCheck(
        "cpu", spec(), clock, resource="cpu", max=90.0, clear_below=80.0, sample_period_s=1.0, sampler=sampler
    )
    assert tick(check, clock) is Status.SUCCESS
    values["cpu"] = 95.0
    assert tick(check, clock, 0.5) is Status.SUCCESS  # not re-sampled yet
    assert tick(check, clock, 0.5) is Status.FAILURE
    values["cpu"] = 85.0
    assert tick(check, clock, 1.0) is Status.FAILURE  # above clear_below
    values["cpu"] = 70.0
    assert tick(check, clock, 1.0) is Status.SUCCESS
    temp = sc.HostResourceCheck("temp", spec(), clock, resource="temperature", max=80.0, sampler=sampler)
    assert tick(temp, clock) is Status.SUCCESS and "not available" in temp.last.message


def test_real_host_sampler_reads_this_machine() -> None:
    sampler = sc.HostSampler()
    for resource in ("cpu", "memory", "disk"):
        value = sampler.read(resource)
        assert value is not None and 0.0 <= value <= 100.0
    t = sampler.read("temperature")
    assert t is None or -50.0 < t < 150.0


def test_feed_counts_malformed_messages_but_still_records_arrival() -> None:
    hub = DataHub()
    feed = hub.feed("odom", "nav_msgs/msg/Odometry", extract_odometry)
    feed.on_message(NS(), 1.0)  # no fields at all
    assert feed.extract_errors == 1 and feed.count == 1 and feed.latest() is None and feed.age(2.0) == 1.0
    assert hub.feed("odom", "nav_msgs/msg/Odometry", None) is feed


def test_kind_parameters_are_keyword_only_and_unknown_ones_are_refused() -> None:
    """Each kind states its own parameters; a misspelt one is a TypeError at construction, not ignored."""
    clock, feed = Clock(), TopicFeed("scan", "sensor_msgs/msg/LaserScan")
    check = tc.TopicSilenceCheck("s", spec(), clock, group="sensors", feed=feed, timeout_s=1.0)
    assert (check.group, check.timeout_s, check.feed) == ("sensors", 1.0, feed)
    with pytest.raises(TypeError):
        tc.TopicSilenceCheck("s", spec(), clock, feed=feed, timeout_s=1.0, timout_s=2.0)
    with pytest.raises(TypeError):
        tc.TopicSilenceCheck("s", spec(), clock, feed=feed)  # timeout_s is required
    with pytest.raises(TypeError):  # the anomaly kinds: shared parameters and their own limits both checked
        vc.ImuAnomalyCheck("i", spec(), clock, feed=feed, max_jump_m=1.0)
    imu_check = vc.ImuAnomalyCheck("i", spec(), clock, feed=feed, stale_s=2.0)
    assert (imu_check.max_w, imu_check.max_a, imu_check.stale_s, imu_check.frozen_s) == (10.0, 50.0, 2.0, 0.0)
