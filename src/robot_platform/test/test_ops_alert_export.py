"""fleet.alerts.export without a server: arguments, the window, which alert messages go in, the MCAP file
(read back with the mcap library and rosbags), the size cap, and the CDR of alerts and log records."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from diagnostic_msgs.msg import KeyValue
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rcl_interfaces.msg import Log
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.highlevel import AnyReader

from robot_platform.ops.actions import RollingBuffer, build_capture
from robot_platform.ops.alert_export import (
    AlertExportError,
    ExportContent,
    build_file,
    export_window,
    file_name,
    parse_request,
    read_capture,
    select_alerts,
)
from robot_platform.ops.alert_history import fold
from robot_platform.ops.logs import LogEntry
from robot_platform.recording.msgdefs import MessageDefinitions
from robot_platform_interfaces.msg import Alert

NOW = 1_800_000_000.0
DEFS = MessageDefinitions()


def alert(alert_id: str, at: float, *, robot: str = "r1", active: bool = True, by: str = "") -> dict:
    return {
        "stamp": {"sec": int(at), "nanosec": round((at % 1) * 1e9)}, "robot_id": robot, "alert_id": alert_id,
        "code": "TOPIC_SILENT.scan", "severity": 2, "message": "no /scan", "source": "health_monitor_tree/scan",
        "active": active, "acknowledged": bool(by), "acknowledged_by": by,
        "values": [{"key": "raised_at", "value": f"{NOW - 600:.3f}"}, {"key": "topic", "value": "scan"}],
    }  # fmt: skip


def test_arguments_are_checked_and_named() -> None:
    assert parse_request({"alert_id": "a-1", "user": "alice"}).minutes == 5
    assert parse_request({"alert_id": "a-1", "minutes": 60, "user": "alice"}).minutes == 60
    bad = [
        ({"alert_id": 7}, "alert_id"), ({"alert_id": "../x"}, "alert_id"), ({"alert_id": ""}, "alert_id"),
        ({"alert_id": "a", "minutes": 0}, "minutes"), ({"alert_id": "a", "minutes": 61}, "minutes"),
        ({"alert_id": "a", "minutes": "5"}, "minutes"), ({"alert_id": "a", "minutes": True}, "minutes"),
        ({"alert_id": "a", "user": 3}, "user"), ({"alert_id": "a", "path": "/etc"}, "path"),
    ]  # fmt: skip
    for args, field in bad:
        with pytest.raises(AlertExportError) as info:
            parse_request(args)
        assert info.value.field == field, args
    with pytest.raises(AlertExportError):
        parse_request(["not", "a", "map"])


def test_window_is_n_minutes_before_the_raise_to_the_clear_or_now_at_most_n_after() -> None:
    raised = NOW - 3600
    assert export_window(raised, None, NOW, 5) == (raised - 300, raised + 300)  # still active, long ago
    assert export_window(raised, raised + 60, NOW, 5) == (raised - 300, raised + 60)  # cleared after a minute
    assert export_window(NOW - 30, None, NOW, 5) == (NOW - 330, NOW)  # active and recent: up to now


def test_the_alerts_own_messages_and_the_robots_other_alerts_in_the_window() -> None:
    bodies = [
        alert("a", NOW - 600), alert("other", NOW - 590), alert("b", NOW - 2000), alert("c", NOW - 595, robot="r2"),
        alert("a", NOW - 10, active=False),  # the clear, outside the window: still this alert's own
    ]  # fmt: skip
    start, end = export_window(NOW - 600, NOW - 10, NOW, 1)
    picked = select_alerts(bodies, "r1", "a", start, end)
    assert [(b["alert_id"], b["active"]) for b in picked] == [("a", True), ("other", True), ("a", False)]


def test_alert_and_log_cdr_decode_in_rclpy_to_the_same_message() -> None:
    """(Not byte-compared: rclpy leaves CDR padding bytes uninitialized.)"""
    body = alert("a", NOW + 0.25, by="alice")
    ours = DEFS.serialize("robot_platform_interfaces/msg/Alert", body)
    msg = Alert(robot_id="r1", alert_id="a", code="TOPIC_SILENT.scan", severity=2, message="no /scan",
                source="health_monitor_tree/scan", active=True, acknowledged=True, acknowledged_by="alice")  # fmt: skip
    msg.stamp.sec, msg.stamp.nanosec = int(NOW), 250_000_000
    msg.values = [KeyValue(key="raised_at", value=f"{NOW - 600:.3f}"), KeyValue(key="topic", value="scan")]
    assert deserialize_message(ours, Alert) == msg
    log = Log(level=30, name="robot_sim", msg="slow", file="f.py", function="fn", line=7)
    log.stamp.sec = 5
    fields = {"stamp": {"sec": 5}, "level": 30, "name": "robot_sim", "msg": "slow", "file": "f.py", "function": "fn",
              "line": 7}  # fmt: skip
    assert deserialize_message(DEFS.serialize("rcl_interfaces/msg/Log", fields), Log) == log


def capture_file(start: float, n: int) -> bytes:
    """A real capture (robot_agent's build_capture) of n /odom messages, one a second from ``start``
    (``start`` within the last 500 s: a capture is the last N seconds of wall time)."""
    from nav_msgs.msg import Odometry

    buffer = RollingBuffer(600.0, 10_000_000)
    for i in range(n):
        msg = Odometry()
        msg.pose.pose.position.x = float(i)
        buffer.add("/odom", bytes(serialize_message(msg)), now=start + i)
    return build_capture("r1", buffer, {"/odom": "nav_msgs/msg/Odometry"}, ["/odom"], 500.0, 10_000_000, DEFS)["file"]


def content(logs: int = 3, capture: bytes | None = None, start: float = NOW - 300, end: float = NOW) -> ExportContent:
    bodies = [alert("a", NOW - 200), alert("a", NOW - 100, by="alice"), alert("a", NOW - 50, active=False)]
    c = ExportContent("r1", fold(bodies)["a"], start, end, bodies)
    c.logs = [LogEntry("r1", NOW - 250 + i, "warn", "robot_sim", f"line {i} " + "x" * 200) for i in range(logs)]
    if capture is not None:
        c.capture = read_capture(capture, start, end)
    return c


def test_file_reads_back_in_mcap_and_rosbags_with_metadata(tmp_path: Path) -> None:
    now = time.time()
    cap = capture_file(now - 20, 20)
    c = content(capture=cap, start=now - 10.5, end=now)
    assert 9 <= len(c.capture) <= 11  # only the window's part of the capture
    c.alerts = [alert("a", now - 5)]
    c.logs = [LogEntry("r1", now - 4, "error", "robot_sim", "boom", "sim.py", 12, "tick")]
    c.deploy = [{"robot_id": "r1", "job_id": "j1", "package_name": "nav_app", "version": "1.2.0", "state": 3,
                 "state_name": "FAILED", "progress": 0.5, "reason": "health check", "stamp": now - 3}]  # fmt: skip
    file, counts = build_file(c, DEFS, {"alert_id": "a", "robot": "r1"}, 6_000_000)
    assert counts == {"/robots/r1/alerts": 1, "/robots/r1/rosout": 1, "/robots/r1/odom": len(c.capture),
                      "/robots/r1/deploy/status": 1}  # fmt: skip
    reader = make_reader(io.BytesIO(file), decoder_factories=[DecoderFactory()])
    seen = {}
    for _schema, channel, _message, decoded in reader.iter_decoded_messages():
        seen.setdefault(channel.topic, []).append(decoded)
    assert seen["/robots/r1/alerts"][0].alert_id == "a" and seen["/robots/r1/alerts"][0].values[0].key == "raised_at"
    assert seen["/robots/r1/rosout"][0].msg == "boom" and seen["/robots/r1/rosout"][0].level == 40
    status = seen["/robots/r1/deploy/status"][0]
    assert (status.job_id, status.state, status.reason, status.stamp.sec) == ("j1", 3, "health check", int(now - 3))
    metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}["robot_platform"]
    assert metadata["alert_id"] == "a" and json.loads(metadata["included"])["/robots/r1/odom"] == len(c.capture)
    path = tmp_path / "x.mcap"
    path.write_bytes(file)
    with AnyReader([path]) as bag:
        topics = {c.topic: c.msgtype for c in bag.connections}
        assert topics["/robots/r1/alerts"] == "robot_platform_interfaces/msg/Alert"
        msgs = [bag.deserialize(raw, conn.msgtype) for conn, _, raw in bag.messages()]
        assert any(getattr(m, "msg", "") == "boom" for m in msgs)


def test_size_cap_leaves_out_the_capture_then_the_farthest_log_lines() -> None:
    now = time.time()
    c = content(logs=2000, capture=capture_file(now - 20, 20), start=now - 30, end=now)
    c.logs = [LogEntry("r1", now - 25 + i / 100, "info", "n", f"{i} " + "y" * 300) for i in range(2000)]
    full, _ = build_file(content(logs=0), DEFS, {}, 6_000_000)
    file, counts = build_file(c, DEFS, {}, max(len(full) * 4, 20_000))
    assert len(file) <= max(len(full) * 4, 20_000)
    assert "/robots/r1/odom" not in counts and counts["/robots/r1/rosout"] < 2000
    assert any("capture left out" in n for n in c.notes) and any("log lines" in n for n in c.notes)
    with pytest.raises(AlertExportError):
        build_file(content(logs=0), DEFS, {}, 100)


def test_download_name_has_no_path_characters() -> None:
    assert file_name("r1", "TOPIC_SILENT.scan", NOW) == "alert-r1-TOPIC_SILENT.scan-20270115T080000Z.mcap"
    assert "/" not in file_name("r1", "../../etc/passwd x", NOW)


def test_malformed_records_are_left_out_not_fatal() -> None:
    from robot_platform.ops.alert_export import Captured

    c = content(logs=1)
    c.alerts.append({**alert("x", NOW - 10), "stamp": "yesterday"})  # a stamp that is not one
    c.alerts.append({**alert("y", NOW - 10), "severity": "high"})  # a field of the wrong type
    c.capture = [Captured("/odom", "not a type", "", b"\x00\x01\x00\x00", int(NOW * 1e9))]
    c.deploy = [{"stamp": "soon", "job_id": "j"}]
    _, counts = build_file(c, DEFS, {}, 6_000_000)
    assert counts == {"/robots/r1/alerts": 3, "/robots/r1/rosout": 1}  # the 3 good alert messages only
