"""System test: alerts raised while NATS is down survive a restart of health_monitor_tree.

Real processes: nats-server (JetStream, file store kept across its restart), robot_sim (fault injection),
health_monitor_tree (twice, same state_dir). Sequence: healthy robot with NATS up (the alert stream
exists), NATS stopped, /scan silenced (a raise, an operator acknowledge, the link alert), health node
SIGTERMed during the outage and started again (it takes over the still-active scan and link alerts:
same alert ids, announced again with the same Nats-Msg-Id), NATS started with the same store: every
alert published on ROS during the outage is in the stream exactly once, in order; the second process'
re-announcements are dropped by JetStream's duplicate window.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import nats
import rclpy

from helpers import free_port, ros_env, wait_for, wait_port
from robot_platform_interfaces.msg import Alert
from robot_platform_interfaces.srv import AcknowledgeAlert, InjectFault
from test_health_system import CHECKS, SRC, TICK_HZ, WAIT_S, Observer

STREAM = "ALERTS_r1"


def msg_id(alert: Alert) -> str:
    """The Nats-Msg-Id health_monitor_tree gives an alert state (see health/node.py _publish_alert)."""
    return f"{alert.alert_id}.{'raise' if alert.active else 'clear'}.{alert.severity}.{int(alert.acknowledged)}"


def stored_ids(url: str) -> list[str]:
    async def fetch() -> list[str]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(STREAM)
            out: list[str] = []
            if info.state.messages == 0:
                return out
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                raw = await js.get_msg(STREAM, seq)
                body = msgpack.unpackb(raw.data)
                assert raw.headers is not None and body["robot_id"] == "r1"
                out.append(raw.headers["Nats-Msg-Id"])
            return out
        finally:
            await nc.close()

    return asyncio.run(fetch())


def metric(port: int, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")), None)


def test_alerts_queued_during_an_outage_survive_a_restart(ros_domain: int, procs: Any, tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {str(tmp_path / 'js')!r} }}\n")
    nats_argv = [shutil.which("nats-server") or "nats-server", "-c", str(conf)]
    server = procs.start("nats-server-1", nats_argv, stop_last=True)
    wait_port(port)
    env = ros_env(ros_domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS)
    state = tmp_path / "health-state"
    procs.start(
        "robot_sim", [sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-p", "robot_id:=r1"], env=env
    )
    health_argv = [sys.executable, "-m", "robot_platform.health.node", "--ros-args"]
    for param in (
        "robot_id:=r1",
        f"tick_rate_hz:={TICK_HZ}",
        f"checks_file:={checks}",
        "metrics_port:=0",
        f"nats_url:={url}",
        f"state_dir:={state}",
        "diagnostics_period_s:=0.5",
        f"nats_alert_stream:={STREAM}",  # no nats_bridge (and its EVENTS_r1) here: the node keeps its own stream
    ):
        health_argv += ["-p", param]
    first = procs.start("health_1", health_argv, env=env)
    rclpy.init()
    obs = Observer()
    try:
        obs.spin_until(
            obs.started_healthy,
            WAIT_S,
            "a healthy robot (0 active faults)",
        )
        # Alerts of a slow start (DDS discovery past the start-up grace on a loaded host), raised and
        # cleared before the outage, are in the stream first.
        startup = [msg_id(a) for _, a in obs.alerts]
        wait_for(lambda: stored_ids(url) == startup, WAIT_S, "the alert stream, created by health_monitor_tree")

        # ---- outage: NATS stops, alerts are raised and acknowledged, the health node is SIGTERMed ----
        server.send_signal(signal.SIGINT)
        assert server.wait(10) == 0
        outage_from = len(obs.alerts)
        injected = time.monotonic()
        obs.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan")
        raised = obs.spin_until(lambda: obs.active_since("TOPIC_SILENT.scan", injected), WAIT_S, "scan alert on ROS")[0]
        res = obs.call(obs.ack, AcknowledgeAlert.Request(alert_id=raised.alert_id, user="alice"))
        assert res.success, res.message
        obs.spin_until(
            lambda: [a for _, a in obs.alerts[outage_from:] if a.source.endswith("/nats_link") and a.active],
            WAIT_S,
            "the NATS link alert (debounce 3 s)",
        )
        obs.spin_until(lambda: any(a.acknowledged for a in obs.alerts_for("TOPIC_SILENT.scan")), WAIT_S, "ack")
        first_ids = [msg_id(a) for _, a in obs.alerts[outage_from:]]
        first.send_signal(signal.SIGTERM)
        assert first.wait(WAIT_S) == 0, "health_monitor_tree did not exit cleanly on SIGTERM"

        # ---- restart during the outage: it replays the queue and takes over the still-active alerts ----
        second_from = len(obs.alerts)
        metrics_port = free_port()
        procs.start("health_2", [*health_argv, "-p", f"metrics_port:={metrics_port}"], env=env)
        obs.spin_until(
            lambda: [a for _, a in obs.alerts[second_from:] if a.source.endswith("/nats_link") and a.active],
            WAIT_S,
            "the restarted node's NATS link alert",
        )
        obs.spin_until(
            lambda: [a for _, a in obs.alerts[second_from:] if a.code == "TOPIC_SILENT.scan" and a.active],
            WAIT_S,
            "the restarted node's scan alert",
        )
        log = procs.child("health_2").output()
        assert f"{len(first_ids)} alert(s) to replay" in log, log
        second_ids = [msg_id(a) for _, a in obs.alerts[second_from:]]
        # The alerts active at the SIGTERM (scan, link) come back with their ids and last states; a check
        # that fires only in the new process (a slow graph discovery: nodes) is a new alert of its own.
        taken_over = {a.source for _, a in obs.alerts[outage_from:second_from]}
        again = [msg_id(a) for _, a in obs.alerts[second_from:] if a.source in taken_over]
        assert again and set(again) <= set(first_ids), f"the restarted node re-uses ids and states: {again}"
        taken_line = next(line for line in log.splitlines() if "alert(s) taken over" in line)
        assert "'scan_silent'" in taken_line and "'nats_link'" in taken_line, taken_line

        wait_port(metrics_port, timeout=WAIT_S)
        assert metric(metrics_port, "robot_health_outbox_durable") == 1.0
        wait_for(
            lambda: (metric(metrics_port, "robot_health_outbox_pending") or 0) >= len(first_ids) + len(second_ids),
            WAIT_S,
            "the outbox gauge to count every alert of the outage",
        )

        # ---- NATS comes back with the same store ----
        procs.start("nats-server-2", nats_argv, stop_last=True)
        wait_port(port)
        wait_for(
            lambda: set(first_ids) <= set(stored_ids(url)[len(startup) :]),
            WAIT_S,
            f"all {len(first_ids)} alerts of the outage in the stream",
        )
        time.sleep(1.0)  # a duplicate would come right behind: give it the time to show (absence)
        stored = stored_ids(url)[len(startup) :]
        wait_for(lambda: metric(metrics_port, "robot_health_outbox_pending") == 0, WAIT_S, "outbox gauge at 0")
        print(f"\noutage alerts: {len(first_ids)} before the restart, {len(second_ids)} after; stream: {stored}")
        assert len(stored) == len(set(stored)), f"an alert state was stored twice: {stored}"
        assert stored[: len(first_ids)] == first_ids, "the outage's alerts first, in order (re-announcements dropped)"
    finally:
        obs.node.destroy_node()
        rclpy.try_shutdown()
    codes = procs.stop_all()
    assert codes.get("health_2") == 0, codes


def test_corrupt_outbox_file_is_moved_aside_and_the_node_runs(
    ros_domain: int, procs: Any, nats_server: Any, tmp_path: Path
) -> None:
    state = tmp_path / "health-state"
    state.mkdir()
    (state / "nats_outbox.sqlite3").write_bytes(b"\x00garbage, not SQLite\xff" * 500)
    env = ros_env(ros_domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS)
    metrics_port = free_port()
    argv = [sys.executable, "-m", "robot_platform.health.node", "--ros-args"]
    for param in (
        "robot_id:=r1",
        f"checks_file:={checks}",
        f"metrics_port:={metrics_port}",
        f"nats_url:={nats_server.url}",
        f"state_dir:={state}",
        f"nats_alert_stream:={STREAM}",
    ):
        argv += ["-p", param]
    procs.start("health_monitor_tree", argv, env=env)
    wait_port(metrics_port, timeout=WAIT_S)
    wait_for(
        lambda: any(
            line.startswith("robot_health_alerts_total{")
            and 'sink="nats_outbox"' in line
            and 'result="corrupt"' in line
            and line.endswith(" 1.0")
            for line in urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
            .read()
            .decode()
            .splitlines()
        ),
        WAIT_S,
        "the corrupt outbox file counted",
    )
    # robot_sim is not running: its topics fall silent and alerts go out through the fresh outbox.
    wait_for(lambda: "TOPIC_SILENT" in " ".join(stored_alert_codes(nats_server.url)), WAIT_S, "an alert in JetStream")
    [aside] = [p for p in state.iterdir() if p.name.startswith("nats_outbox.sqlite3.corrupt-")]
    assert aside.read_bytes().startswith(b"\x00garbage")
    log = procs.child("health_monitor_tree").output()
    assert f"moved aside to {aside}" in log, log
    assert procs.stop_all().get("health_monitor_tree") == 0


def stored_alert_codes(url: str) -> list[str]:
    async def fetch() -> list[str]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(STREAM)
            if info.state.messages == 0:
                return []
            raws = [await js.get_msg(STREAM, s) for s in range(info.state.first_seq, info.state.last_seq + 1)]
            return [msgpack.unpackb(raw.data)["code"] for raw in raws]
        finally:
            await nc.close()

    return asyncio.run(fetch())
