"""Subject scheme and command allowlist: no wildcard or token injection, exact subject+type grants."""

from __future__ import annotations

import pytest

from robot_platform.messaging import subjects
from robot_platform.messaging.errors import NotAllowedError, SubjectError


def test_scheme() -> None:
    assert subjects.telemetry("r1", "/odom") == "robots.r1.ros.odom"
    assert subjects.telemetry("r1", "/camera/image_raw") == "robots.r1.ros.camera.image_raw"
    assert subjects.command("r1", "/cmd_vel") == "robots.r1.cmd.cmd_vel"
    assert subjects.alerts("r-2") == "robots.r-2.alerts"
    assert subjects.deploy("r1", "status") == "robots.r1.deploy.status"
    assert subjects.frames("r1", "front") == "robots.r1.frames.front"
    assert subjects.health("r1") == "robots.r1.health"
    assert subjects.health("r1", "nats_bridge") == "robots.r1.health.nats_bridge"
    assert subjects.presence("r1") == "robots.r1.presence"
    assert subjects.robot_wildcard("r1", "cmd") == "robots.r1.cmd.>"


@pytest.mark.parametrize("robot", ["", "*", ">", "r.1", "r 1", "r1\n", "-r", "a" * 65, "r1>"])
def test_bad_robot_ids(robot: str) -> None:
    with pytest.raises(SubjectError):
        subjects.telemetry(robot, "/odom")


@pytest.mark.parametrize("topic", ["odom", "/", "/a/", "/a b", "/a.b", "/a/*", "/a/>", "/1a", "//a", "/a__b", "/a\tb"])
def test_bad_topics(topic: str) -> None:
    with pytest.raises(SubjectError):
        subjects.telemetry("r1", topic)


@pytest.mark.parametrize("token", ["", "a.b", "*", ">", "a b"])
def test_bad_tokens(token: str) -> None:
    with pytest.raises(SubjectError):
        subjects.frames("r1", token)


def test_parse_round_trip() -> None:
    parsed = subjects.parse(subjects.telemetry("r7", "/a/b_c"))
    assert (parsed.robot_id, parsed.kind, parsed.topic) == ("r7", "ros", "/a/b_c")
    assert subjects.parse("robots.r1.alerts").rest == ()
    for bad in ("robots.r1", "robots.*.ros.odom", "robots.r1.ros", "fleet.r1.ros.odom", "robots.r1.bogus.x"):
        with pytest.raises(SubjectError):
            subjects.parse(bad)


def test_allowlist_grants_exact_subject_and_type_only() -> None:
    allow = subjects.CommandAllowlist("r1", [("/cmd_vel", "geometry_msgs/Twist")])
    rule = allow.check("robots.r1.cmd.cmd_vel", "geometry_msgs/msg/Twist")
    assert rule.topic == "/cmd_vel" and rule.type_name == "geometry_msgs/msg/Twist"
    assert allow.check("robots.r1.cmd.cmd_vel", "geometry_msgs/Twist") == rule
    refused = [
        ("robots.r1.cmd.cmd_vel", "std_msgs/msg/String"),
        ("robots.r1.cmd.cmd_vel", ""),
        ("robots.r1.cmd.cmd_vel", None),
        ("robots.r1.cmd.other", "geometry_msgs/msg/Twist"),
        ("robots.r2.cmd.cmd_vel", "geometry_msgs/msg/Twist"),  # another robot's command
        ("robots.r1.cmd.>", "geometry_msgs/msg/Twist"),
    ]
    for subject, type_name in refused:
        with pytest.raises(NotAllowedError) as err:
            allow.check(subject, type_name)
        assert err.value.subject == subject


def test_allowlist_rejects_bad_config() -> None:
    with pytest.raises(SubjectError):
        subjects.CommandAllowlist("r1", [("cmd_vel", "geometry_msgs/msg/Twist")])
    with pytest.raises(SubjectError):
        subjects.CommandAllowlist("r1", [("/cmd_vel", "Twist")])


def test_service_subjects() -> None:
    assert subjects.service("r1", "/robot_sim/estop") == "robots.r1.srv.robot_sim.estop"
    assert subjects.service("r1", "/deploy") == "robots.r1.srv.deploy"
    assert subjects.robot_wildcard("r1", "srv") == "robots.r1.srv.>"
    parsed = subjects.parse("robots.r1.srv.health_monitor_tree.acknowledge_alert")
    assert (parsed.robot_id, parsed.kind, parsed.topic) == ("r1", "srv", "/health_monitor_tree/acknowledge_alert")
    for bad in ("/robot_sim/*", "robot_sim/estop", "/a.b", "/a/>"):
        with pytest.raises(SubjectError):
            subjects.service("r1", bad)
    with pytest.raises(SubjectError):
        subjects.parse("robots.r1.srv")  # a service subject names a service
