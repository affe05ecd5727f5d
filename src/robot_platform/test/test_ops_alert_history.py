"""fleet.alerts.query logic without a server: argument validation, folding messages into histories, filters."""

from __future__ import annotations

import pytest

from robot_platform.ops.alert_history import AlertQueryError, answer, fold, parse_query

NOW = 1_800_000_000.0


def msg(alert_id: str, at: float, *, robot: str = "r1", code: str = "TOPIC_SILENT.scan", severity: int = 2,
        active: bool = True, by: str = "", raised_at: float | None = None) -> dict:  # fmt: skip
    values = [{"key": "topic", "value": "scan"}]
    if raised_at is not None:
        values.append({"key": "raised_at", "value": f"{raised_at:.3f}"})
    return {
        "stamp": {"sec": int(at), "nanosec": int((at % 1) * 1e9)}, "robot_id": robot, "alert_id": alert_id,
        "code": code, "severity": severity, "message": "m", "source": "health_monitor_tree/scan_silent",
        "active": active, "acknowledged": bool(by), "acknowledged_by": by, "values": values,
    }  # fmt: skip


STREAM = [
    msg("a", NOW - 100, raised_at=NOW - 100),
    msg("b", NOW - 90, robot="r2", code="SPEED_DROP", severity=2, raised_at=NOW - 90),
    msg("a", NOW - 80, by="alice", raised_at=NOW - 100),
    msg("c", NOW - 70, code="BATTERY_LOW", severity=1, raised_at=NOW - 70),
    msg("c", NOW - 60, code="BATTERY_LOW", severity=3, raised_at=NOW - 70),
    msg("a", NOW - 50, by="alice", active=False, raised_at=NOW - 100),
    msg("d", NOW - 5, raised_at=NOW - 4000),  # a restarted node re-announcing an old alert: raise time kept
    {"garbage": True},
]


def q(**args):
    return answer(fold(STREAM), parse_query(args), NOW, truncated=False)["alerts"]


def test_history_of_one_alert_raise_ack_clear_with_who_and_when() -> None:
    (a,) = [x for x in q() if x["alert_id"] == "a"]
    assert (a["raised_at"], a["acknowledged_by"], a["acknowledged_at"], a["cleared_at"]) == (
        NOW - 100, "alice", NOW - 80, NOW - 50,
    )  # fmt: skip
    assert [e["event"] for e in a["events"]] == ["raise", "acknowledge", "clear"] and not a["active"]
    assert a["events"][1]["by"] == "alice" and a["check"] == "scan_silent"


def test_filters_robot_severity_code_state_time() -> None:
    assert [x["alert_id"] for x in q()] == ["c", "b", "a", "d"], "newest raise first"
    assert [x["alert_id"] for x in q(robot="r2")] == ["b"]
    assert [x["alert_id"] for x in q(severity="critical")] == ["c"], "escalated to critical"
    assert [x["alert_id"] for x in q(code="TOPIC_SILENT*")] == ["a", "d"]
    assert [x["alert_id"] for x in q(code="SPEED_DROP")] == ["b"]
    assert [x["alert_id"] for x in q(state="cleared")] == ["a"]
    assert [x["alert_id"] for x in q(state="acknowledged")] == ["a"]
    assert [x["alert_id"] for x in q(state="active")] == ["c", "b", "d"]
    assert [x["alert_id"] for x in q(since_s=3600, until_s=75)] == ["b", "a", "d"], "c raised after the range"
    assert [x["alert_id"] for x in q(since_s=40)] == ["c", "b", "d"], "a cleared before the range"
    assert [e["event"] for e in q(robot="r1", code="BATTERY_LOW")[0]["events"]] == ["raise", "escalate"]
    assert q(code="TOPIC_SILENT*", limit=1)[0]["alert_id"] == "a"
    assert q(state="any", robot="r1", code="TOPIC_SILENT.scan", since_s=10)[0]["raised_at"] == NOW - 4000


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"robot": "r 1"}, "robot"), ({"severity": "loud"}, "severity"), ({"severity": 7}, "severity"),
        ({"code": "A*B"}, "code"), ({"since_s": -1}, "since_s"), ({"since_s": 10, "until_s": 20}, "until_s"),
        ({"state": "open"}, "state"), ({"limit": 0}, "limit"), ({"limit": True}, "limit"), ({"who": 1}, "who"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_field(args: dict, field: str) -> None:
    with pytest.raises(AlertQueryError) as err:
        parse_query(args)
    assert err.value.field == field and str(err.value).startswith("alert query: ")
