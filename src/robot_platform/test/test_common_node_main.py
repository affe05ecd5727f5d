"""spin_node: the shared main() of every node - exit codes for a clean stop, a failure and a bad config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robot_platform.launcher.domains import DomainReservation

PKG = str(Path(__file__).resolve().parents[1])

NODE = textwrap.dedent("""
    import os
    import signal
    import sys
    import time
    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import String
    from robot_platform.common.node_main import spin_node
    from robot_platform.exceptions import ConfigError

    MODE = sys.argv[1]

    class Probe(Node):
        def __init__(self):
            super().__init__("node_main_probe")
            if MODE == "config":
                raise ConfigError("rate_hz", -1, "must be > 0")
            self.pub = self.create_publisher(String, "probe", 10)
            self.create_timer(0.05, self.tick)

        def close(self):
            if MODE == "twice":    # the second Ctrl-C arrives while the node cleans up
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.3)

        def tick(self):
            if MODE == "twice":
                os.kill(os.getpid(), signal.SIGINT)
            if MODE == "cut":      # what SIGTERM's handler does in the middle of a callback
                rclpy.shutdown()
            if MODE == "cut_take":  # the shutdown lands while the executor takes a message (C++ layer)
                rclpy.shutdown()
                raise RuntimeError("Unable to convert call argument '0' to Python object")
            elif MODE == "crash":  # a real failure while the context is fine
                raise RuntimeError("boom")
            self.pub.publish(String(data="x"))

    sys.exit(spin_node(Probe))
""")


def run(mode: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "probe.py"
    script.write_text(NODE)
    block = DomainReservation(count=1)
    try:
        env = os.environ | {"PYTHONPATH": PKG + os.pathsep + os.environ.get("PYTHONPATH", ""),
                            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(block.domain_id)}
        return subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=30,
                              env=env)  # fmt: skip
    finally:
        block.release()


def test_a_callback_cut_by_the_shutdown_is_a_clean_stop(tmp_path: Path) -> None:
    result = run("cut", tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_take_cut_by_the_shutdown_is_a_clean_stop(tmp_path: Path) -> None:
    result = run("cut_take", tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_second_sigint_during_the_clean_up_is_ignored(tmp_path: Path) -> None:
    result = run("twice", tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(("mode", "code", "text"), [("crash", 1, "RuntimeError: boom"),
                                                     ("config", 2, "cannot start: ")])  # fmt: skip
def test_failures_keep_their_exit_codes(tmp_path: Path, mode: str, code: int, text: str) -> None:
    result = run(mode, tmp_path)
    assert result.returncode == code and text in result.stderr, result.stderr
