"""Shipped configuration files agree with each other (the parts no node checks at start-up)."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def test_fleet_rviz_config_shows_the_mirrored_topics() -> None:
    """config/robot_platform.rviz is valid YAML and displays what the control bridge mirrors."""
    rviz = yaml.safe_load((REPO / "config" / "robot_platform.rviz").read_text())
    control = yaml.safe_load((REPO / "config" / "control.yaml").read_text())
    mirrored = control["/**/nats_bridge"]["ros__parameters"]["mirror"]["topics"]
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    assert "/odom" in mirrored
    assert {f"/fleet/r{i}/odom" for i in (1, 2, 3)} <= topics
    assert "/scan" in mirrored and {f"/fleet/r{i}/scan" for i in (1, 2, 3)} <= topics
    # the mirror's per-robot TF trees hang under "fleet" (bridge/fleet_frames.py)
    assert control["/**/nats_bridge"]["ros__parameters"]["mirror"]["frame_prefix"] is True
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "fleet"
