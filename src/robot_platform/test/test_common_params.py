"""common/params.py on a real rclpy node (own context and domain): descriptors, typed values, string
arrays as YAML writes them, groups under a prefix, and the errors a user sees."""

from __future__ import annotations

import pytest
from rcl_interfaces.msg import ParameterType

from robot_platform.common.params import REQUIRED, Param, declare_params
from robot_platform.exceptions import MissingParameterError, ParameterError

TABLE = (
    Param("robot_id", str, REQUIRED, "robot id"),
    Param("rate_hz", float, 2.0, "a rate", (0.1, 10.0)),
    Param("depth", int, 5, "a depth", (1, 100), read_only=False),
    Param("names", list, (), "names"),
    Param("cameras", list, ("front",), "cameras"),
    Param("enabled", bool, True, "a switch"),
)



def test_defaults_overrides_and_descriptors(make_node) -> None:
    node = make_node(robot_id="r7", names=["", "a", "b"], depth=9)
    p = declare_params(node, TABLE)
    assert dict(p) == {"robot_id": "r7", "rate_hz": 2.0, "depth": 9, "names": ["a", "b"], "cameras": ["front"],
                       "enabled": True}  # fmt: skip
    rate = node.describe_parameter("rate_hz")
    assert rate.read_only and rate.type == ParameterType.PARAMETER_DOUBLE and rate.description == "a rate"
    assert (rate.floating_point_range[0].from_value, rate.floating_point_range[0].to_value) == (0.1, 10.0)
    assert not node.describe_parameter("depth").read_only
    assert node.describe_parameter("names").type == ParameterType.PARAMETER_STRING_ARRAY


def test_empty_yaml_array_is_no_names(make_node) -> None:
    assert declare_params(make_node(robot_id="r7", cameras=[""]), TABLE)["cameras"] == []


def test_groups_are_declared_under_their_prefix(make_node) -> None:
    node = make_node(**{"out.odom.topic": "/odom"})
    group = (Param("topic", str, "", "topic"), Param("max_rate_hz", float, 0.0, "rate"))
    assert dict(declare_params(node, group, "out.odom")) == {"topic": "/odom", "max_rate_hz": 0.0}
    assert node.has_parameter("out.odom.max_rate_hz")


@pytest.mark.parametrize(
    ("overrides", "error", "text"),
    [
        ({}, MissingParameterError, "robot_id is required: set -p robot_id:=<id> or robot_id in the robot's YAML"),
        ({"robot_id": ""}, MissingParameterError, "robot_id is required"),
        ({"robot_id": "r1", "rate_hz": 5}, ParameterError, "rate_hz must be a float"),
        ({"robot_id": "r1", "depth": 0}, ParameterError, "depth must be within (1, 100)"),
    ],
)
def test_errors_name_the_parameter(make_node, overrides: dict, error: type, text: str) -> None:
    with pytest.raises(error) as info:
        declare_params(make_node(**overrides), TABLE)
    assert text in str(info.value)


def test_a_default_of_the_wrong_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        Param("rate_hz", float, 2, "an int is not a float")
    with pytest.raises(TypeError):
        Param("names", list, ["a"], "a list default must be a tuple (tables are immutable)")
