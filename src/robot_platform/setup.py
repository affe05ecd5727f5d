"""ament_python setup for robot_platform.

The repository's top-level launch/, config/, web/ and examples/ directories are installed into
share/robot_platform/ so that `ros2 launch robot_platform robot.launch.py` and the pip-only runner
(`robot-platform robot`) find the same files.
"""

import os
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "robot_platform"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent  # src/robot_platform -> repository root


def tree(top: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing REPO/<top> into share/<package>/<top>, keeping sub-directories."""
    entries = []
    root = REPO / top
    for directory in sorted(p for p in [root, *root.rglob("*")] if p.is_dir()):
        if "node_modules" in directory.parts or "__pycache__" in directory.parts:
            continue
        files = [os.path.relpath(f, HERE) for f in sorted(directory.iterdir()) if f.is_file()]
        if files:
            entries.append((str(Path("share", PACKAGE, directory.relative_to(REPO))), files))
    return entries


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("web"),
        *tree("examples"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robot_platform maintainers",
    maintainer_email="maintainers@robot-platform.invalid",
    description="Robot operations platform for closed sites (ROS 2, NATS, MQTT, S3, Prometheus).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "robot_sim = robot_platform.sim.node:main",
            "nats_bridge = robot_platform.bridge.node:main",
            "health_monitor_tree = robot_platform.health.node:main",
            "deploy_service = robot_platform.deploy.node:main",
            "frame_publisher = robot_platform.frames.node:main",
            "jobs_service = robot_platform.jobs.node:main",
            "ws_agent = robot_platform.ws.node:main",
            "robot_agent = robot_platform.ops.node:main",
            "robot_agent_all = robot_platform.agent.one_process:main",
            "fleet_registry = robot_platform.ops.registry_node:main",
            "robot-platform = robot_platform.cli.main:main",
            "server_last = robot_platform.launcher.server_last:main",
        ],
    },
)
