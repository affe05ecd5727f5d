"""A robot node started without robot_id stops at once, saying how to set it (issue 16).

Before, every node defaulted to "r1", so a robot without configuration silently claimed to be r1
(its subjects, alerts and deployments mixed with the real r1's). Each node is started for real, as
``ros2 run`` would (its module's main, own ROS domain, discovery on this host only).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from robot_platform.common.node_main import EXIT_CANNOT_START

NODES = (
    "robot_platform.sim.node",
    "robot_platform.bridge.node",
    "robot_platform.health.node",
    "robot_platform.frames.node",
    "robot_platform.ws.node",
    "robot_platform.ops.node",
    "robot_platform.deploy.node",
)
MESSAGE = "robot_id is required: set -p robot_id:=<id> or robot_id in the robot's YAML"
START_TIMEOUT_S = 60.0


def _start(module: str, domain: int, *ros_args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    argv = [sys.executable, "-m", module, "--ros-args", *ros_args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)


@pytest.mark.parametrize("module", NODES)
def test_a_node_without_robot_id_exits_with_the_reason(module: str, ros_domain: int) -> None:
    result = _start(module, ros_domain)
    assert result.returncode == EXIT_CANNOT_START, result.stderr
    assert MESSAGE in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_robot_id_is_refused_too(ros_domain: int) -> None:
    result = _start("robot_platform.bridge.node", ros_domain, "-p", "robot_id:=''")
    assert result.returncode == EXIT_CANNOT_START, result.stderr
    assert MESSAGE in result.stderr
