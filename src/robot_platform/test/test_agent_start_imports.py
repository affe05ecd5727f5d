"""The robot agent and its runner import at start only what a robot uses from the first second.

Why: robot_agent_all is one process for every agent node, so whatever any node's module imports is
memory every robot pays (issue 17: 150 MB for the whole platform on a robot). boto3/botocore (with
awscrt) are needed only at the first deployment, awscrt's MQTT only with IoT Jobs configured,
cryptography only with trusted keys configured, mcap/lz4/zstd only at the first capture, the demo's
layout (yaml, site services) never on a robot: about 24 MB of the agent and 6 MB of the runner
(bench/RESULTS.md, "Robot agent memory").
"""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(code: str, heavy: tuple[str, ...]) -> list[str]:
    probe = f"import sys\n{code}\nprint('loaded:', *[m for m in {heavy!r} if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("loaded:"))
    return line.split()[1:]


def test_agent_node_modules_leave_deployment_and_capture_libraries_for_later() -> None:
    code = "\n".join(
        f"import {m}"
        for m in (
            "robot_platform.agent.one_process",
            "robot_platform.bridge.node",
            "robot_platform.health.node",
            "robot_platform.ws.node",
            "robot_platform.ops.node",
            "robot_platform.deploy.node",
        )
    )
    heavy = ("boto3", "botocore", "awscrt", "s3transfer", "cryptography", "mcap", "lz4", "zstandard")
    assert _loaded_after(code, heavy) == []


def test_deployment_libraries_still_load_when_used() -> None:
    """The lazy imports are real: the first S3 client and the IoT Jobs client bring them in."""
    code = (
        "from robot_platform.deploy.fetch import S3Config\nS3Config(endpoint_url='http://127.0.0.1:1').client()\n"
        "from robot_platform.deploy import iot_jobs_client\nimport inspect\n"
        "assert 'MqttClient' in inspect.getsource(iot_jobs_client.start_agent)\n"
        "from robot_platform.ops.actions import build_capture\n"
    )
    assert _loaded_after(code, ("boto3", "botocore")) == ["boto3", "botocore"]


def test_robot_runner_does_not_load_the_demo() -> None:
    code = (
        "from robot_platform.cli.main import build_parser\n"
        "build_parser('robot').parse_args(['robot', '--robot-id', 'r1'])"
    )
    assert _loaded_after(code, ("robot_platform.demo.fleet", "yaml", "boto3", "rclpy", "nats")) == []
