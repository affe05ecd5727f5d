"""A silence on a saturated host: trusted at once when its witnesses prove it real, held otherwise.

The trade-off of issue 15 (see health/starvation.py): on a CPU-saturated host a new silence used to wait
three timeouts (3-4 s for a dead lidar); now it counts at once when the monitor ticked on time through it
and another topic of the same publishing node kept arriving. Plain logic with a fake clock (no ROS).
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from robot_platform.health.metrics import HealthMetrics
from robot_platform.health.monitor import HealthMonitor
from robot_platform.health.sources import DataHub, TopicFeed
from robot_platform.health.starvation import LoadGuard
from robot_platform.health.tree_builder import build_tree, load_config_text

TICK = 0.2
CONFIG = """\
defaults: {debounce_s: 0.5, clear_s: 1.0, startup_grace_s: 5, flap_changes: 0}
topics:
  scan: sensor_msgs/msg/LaserScan
  imu: sensor_msgs/msg/Imu
checks:
  - {name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: 1.0}
  - {name: imu_silent, kind: topic_silence, group: sensors, topic: imu, timeout_s: 1.0}
  - {name: overload, kind: host_overload, group: host, hold_s: 5, clear_s: 5, witness_gap_s: %s}
"""


class Rig:
    """Two topics of one simulator (or of two drivers), a monitor on a fake clock, a fake PSI reading."""

    def __init__(self, imu_node: str = "/robot_sim", witness_gap_s: float = 0.5) -> None:
        self.t = 0.0
        self.pressure = 95.0  # saturated from the start: a shared robot computer running flat out
        tree = build_tree(
            load_config_text(CONFIG % witness_gap_s, "w.yaml"), clock=lambda: self.t, pressure=lambda: self.pressure
        )
        self.tree, self.hub = tree, tree.hub
        self.monitor = HealthMonitor(tree, "r1", clock=lambda: self.t, wall_clock=lambda: 1e9 + self.t)
        self.metrics = HealthMetrics("r1")
        self.hub.graph.set_publishers("scan", ["/robot_sim"])
        self.hub.graph.set_publishers("imu", [imu_node])
        self.alerts: list = []
        self.raised_at: dict[str, float] = {}

    def run(self, seconds: float, scan_hz: float = 10.0, imu_hz: float = 50.0, dt: float = TICK) -> Rig:
        end = self.t + seconds
        while self.t < end - 1e-9:
            prev, self.t = self.t, round(self.t + dt, 6)
            for topic, hz in (("scan", scan_hz), ("imu", imu_hz)):
                if hz > 0:  # the messages of (prev, t], as the callbacks would have stored them
                    n = int(self.t * hz + 1e-9) - int(prev * hz + 1e-9)
                    for k in range(n, 0, -1):
                        self.hub.topics[topic].on_message(NS(), self.t - (k - 1) / hz)
            result = self.monitor.tick()
            self.metrics.observe_tick(self.monitor, result, self.t)
            for a in result.alerts:
                if a.active:
                    self.raised_at.setdefault(a.code, self.t)
            self.alerts += result.alerts
        return self

    def codes(self) -> list[tuple[str, bool]]:
        return [(a.code, a.active) for a in self.alerts]

    def metric(self, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(generate_latest(self.metrics.registry).decode()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        raise KeyError(name)


def test_a_silence_witnessed_by_a_sibling_topic_is_raised_at_once_on_a_saturated_host() -> None:
    rig = Rig().run(10.0)
    assert rig.alerts == [], "a saturated host whose data arrives in time says nothing"
    start = rig.t
    rig.run(3.0, scan_hz=0)  # the lidar stops; the simulator's imu keeps arriving
    assert rig.codes() == [("TOPIC_SILENT.scan", True)], "the real fault only, no HOST_OVERLOADED"
    # timeout 1 s + debounce 0.5 s, at the tick after each (as on an idle host), not 3 timeouts + debounce
    assert rig.raised_at["TOPIC_SILENT.scan"] - start <= 1.5 + 2 * TICK + 1e-6
    assert "imu kept arriving" in rig.alerts[0].message and rig.alerts[0].values["witnesses"] == "imu"
    assert rig.metric("robot_health_verdicts_witnessed_total", robot="r1", check="scan_silent") == 1.0
    assert rig.metric("robot_health_verdicts_held_total", robot="r1", check="scan_silent") == 0.0
    assert rig.metric("robot_health_host_saturated", robot="r1") == 1.0
    rig.run(3.0)
    assert rig.codes()[-1] == ("TOPIC_SILENT.scan", False), "cleared after clear_s once it is back"


def test_a_simulator_starved_as_a_whole_is_held_and_told_as_one_host_overloaded() -> None:
    rig = Rig().run(10.0)
    rig.run(2.0, scan_hz=0, imu_hz=0)  # every topic of the node late by 2 s: starvation, not two dead sensors
    rig.run(3.0)
    assert rig.codes() == [("HOST_OVERLOADED", True)]
    assert rig.metric("robot_health_verdicts_held_total", robot="r1", check="scan_silent") == 1.0
    assert rig.metric("robot_health_verdicts_witnessed_total", robot="r1", check="scan_silent") == 0.0


def test_a_witness_that_paused_too_proves_nothing() -> None:
    rig = Rig().run(10.0)
    rig.run(0.6, scan_hz=0, imu_hz=0)  # both paused 0.6 s (> witness_gap_s 0.5), then imu came back
    rig.run(1.6, scan_hz=0)
    assert rig.alerts == [], "imu's pause inside the silence: not proof, the cautious path holds"
    rig.run(1.6, scan_hz=0)  # 3 timeouts + debounce: a dead sensor, saturated or not
    assert rig.codes() == [("TOPIC_SILENT.scan", True)]


def test_a_topic_of_another_node_is_no_witness() -> None:
    rig = Rig(imu_node="/imu_driver").run(10.0)
    rig.run(2.5, scan_hz=0)  # scan's own node may be starved: imu from another process says nothing of it
    assert rig.alerts == []
    rig.run(1.0, scan_hz=0)
    assert rig.codes() == [("TOPIC_SILENT.scan", True)], "raised by the cautious path (3 timeouts)"


def test_a_late_monitor_does_not_trust_its_witnesses() -> None:
    rig = Rig().run(10.0)
    rig.run(2.4, scan_hz=0, dt=0.6)  # the monitor itself ticks every 0.6 s: its view is not on time
    assert rig.alerts == []
    rig.run(1.6, scan_hz=0)
    assert rig.codes() == [("TOPIC_SILENT.scan", True)]


def test_witness_gap_zero_keeps_the_cautious_path_only() -> None:
    rig = Rig(witness_gap_s=0.0).run(10.0)
    rig.run(2.5, scan_hz=0)
    assert rig.alerts == []
    rig.run(1.0, scan_hz=0)
    assert rig.codes() == [("TOPIC_SILENT.scan", True)]


def test_on_a_host_that_is_not_saturated_witnesses_are_not_needed() -> None:
    rig = Rig(imu_node="/imu_driver")
    rig.pressure = 10.0
    rig.run(10.0)
    start = rig.t
    rig.run(2.0, scan_hz=0)
    assert rig.codes() == [("TOPIC_SILENT.scan", True)]
    assert rig.raised_at["TOPIC_SILENT.scan"] - start <= 1.5 + 2 * TICK + 1e-6
    assert "witnesses" not in rig.alerts[0].values


# ---- the pieces: LoadGuard.judge, TopicFeed.max_gap, DataHub.witnesses -------------------------------


def _guard(saturated: bool, ticks: list[float]) -> LoadGuard:
    guard = LoadGuard(pressure=lambda: 95.0 if saturated else 5.0, witness_gap_s=0.5, settle_s=1.0)
    for t in ticks:
        guard.on_tick(t)
    return guard


ON_TIME = [round(0.2 * i, 6) for i in range(51)]  # 0..10 s every 0.2 s


@pytest.mark.parametrize(
    ("saturated", "ticks", "silence_s", "witnesses", "held", "trusted_by"),
    [
        (False, ON_TIME, 1.2, [], "", ()),  # idle host: a silence is a silence
        (True, ON_TIME, 1.2, ["imu"], "", ("imu",)),  # saturated, on time, witnessed: at once
        (True, ON_TIME, 1.2, [], "saturated", ()),  # no witness: held
        (True, ON_TIME, 3.2, [], "", ()),  # 3 timeouts: trusted however busy
        (True, [t for t in ON_TIME if not 9.0 < t < 9.8], 1.2, ["imu"], "saturated", ()),  # late tick 9.0-9.8
        (True, [t for t in ON_TIME if not 8.0 < t < 8.8], 1.2, ["imu"], "", ("imu",)),  # late before it
        (True, [*ON_TIME[:40], 10.0], 1.2, ["imu"], "saturated", ()),  # a 2 s starvation gap ends now
        (False, [*ON_TIME[:40], 10.0], 1.2, ["imu"], "starved for 2.2s", ()),
    ],
)
def test_judge_decides_from_ticks_pressure_and_witnesses(
    saturated: bool, ticks: list[float], silence_s: float, witnesses: list[str], held: str, trusted_by: tuple
) -> None:
    guard = _guard(saturated, ticks)
    asked: list[tuple[float, float]] = []

    def witness(since: float, now: float) -> list[str]:
        asked.append((since, now))
        return witnesses

    trust = guard.judge(10.0, 1.0, silence_s, witness)
    assert (held in trust.why) if held else trust.why == ""
    assert trust.witnesses == trusted_by
    if trusted_by:
        assert asked == [(pytest.approx(10.0 - silence_s), 10.0)], "witnesses asked about the silence itself"


def test_max_gap_over_a_span() -> None:
    feed = TopicFeed("imu", "sensor_msgs/msg/Imu")
    assert feed.max_gap(0.0, 2.0) == 2.0, "nothing ever: silent through the span"
    for t in (0.1, 0.3, 0.5, 1.4, 1.5, 1.6):
        feed.on_message(NS(), t)
    assert feed.max_gap(0.2, 0.5) == pytest.approx(0.2)
    assert feed.max_gap(0.0, 2.0) == pytest.approx(0.9)  # 0.5 -> 1.4
    assert feed.max_gap(1.45, 2.5) == pytest.approx(0.9)  # 1.6 -> now
    assert feed.max_gap(1.0, 1.55) == pytest.approx(0.4)  # span start 1.0 -> 1.4


def test_witnesses_are_topics_of_the_same_publishing_node_that_kept_arriving() -> None:
    hub = DataHub()
    feeds = {t: hub.feed(t, "x/msg/Y", None) for t in ("scan", "imu", "odom", "battery", "cmd_vel")}
    for t in [i * 0.1 for i in range(30)]:
        for topic in ("imu", "odom", "cmd_vel"):
            feeds[topic].on_message(NS(), t)
    feeds["battery"].on_message(NS(), 2.0)
    assert hub.witnesses("scan", 1.0, 3.0, 0.5) == [], "publisher of scan unknown: no proof"
    for topic in ("scan", "imu", "odom", "battery"):
        hub.graph.set_publishers(topic, ["/robot_sim"])
    hub.graph.set_publishers("cmd_vel", ["/teleop"])
    assert hub.witnesses("scan", 1.0, 3.0, 0.5) == ["imu", "odom"], "battery too slow, cmd_vel another node"
    hub.graph.set_publishers("scan", [])  # the node went away from the graph: its last publishers are kept
    assert hub.witnesses("scan", 1.0, 3.0, 0.5) == ["imu", "odom"]
    assert hub.witnesses("scan", 1.0, 3.6, 0.5) == [], "the siblings stopped too (at 2.9 s)"
