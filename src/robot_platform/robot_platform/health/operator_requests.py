"""Operator requests arriving over NATS: acknowledge an alert, silence a check. Plain Python.

Why a module of its own: the request body comes from the network, so its validation is tested without
NATS or ROS. Authorization is NATS's (subject permissions: only operator accounts may publish to
``robots.<id>.health.ack`` / ``.silence``); the ``user`` field is what gets audited (the console's
ws_agent sets it to the logged-in user, never what the browser sent).

    ack      {alert_id, user, note?}                 note: why (at most NOTE_MAX characters)
    silence  {check, duration_s, user, reason?}      check "*": every check of the robot (maintenance);
                                                     duration_s 0 lifts the silence
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robot_platform.health.alert_state import NOTE_MAX
from robot_platform.health.errors import UnknownCheckError
from robot_platform.health.monitor import AlertRecord, HealthMonitor

ACK = "ack"
SILENCE = "silence"
USER_MAX = 128
ALL_CHECKS = "*"


def _optional_text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key, "")
    if not isinstance(value, str) or len(value) > NOTE_MAX:
        raise ValueError(f"{key} must be a string of at most {NOTE_MAX} characters")
    return value.strip()


@dataclass(frozen=True)
class OperatorResult:
    """Reply to send, alert to re-publish (after an acknowledge) and a line for the log."""

    reply: dict[str, Any]
    alert: AlertRecord | None
    log: str
    ok: bool


def handle_request(monitor: HealthMonitor, action: str, payload: dict[str, Any]) -> OperatorResult:
    """Apply ``action`` (``ack`` or ``silence``) with ``payload``; never raises on bad input."""
    user = payload.get("user")
    try:
        if not isinstance(user, str) or not 0 < len(user) <= USER_MAX:
            raise ValueError(f"user (string of 1..{USER_MAX} chars) is required")
        if action == ACK:
            alert_id = payload.get("alert_id")
            if not isinstance(alert_id, str):
                raise ValueError("alert_id (string) is required")
            record = monitor.acknowledge(alert_id, user, _optional_text(payload, "note"))
            return OperatorResult(
                {"success": True, "message": f"{record.code} acknowledged", "alert_id": alert_id},
                record,
                f"alert {alert_id} ({record.code}) acknowledged by {user!r}",
                True,
            )
        if action == SILENCE:
            check, duration = payload.get("check"), payload.get("duration_s")
            if not isinstance(check, str) or isinstance(duration, bool) or not isinstance(duration, int | float):
                raise ValueError("check (string) and duration_s (number) are required")
            reason = _optional_text(payload, "reason")
            if check == ALL_CHECKS:
                names = sorted(monitor.meta)
                for name in names:
                    monitor.silence(name, float(duration), user, reason)
                what = "unsilenced" if duration <= 0 else f"silenced for {float(duration):g}s"
                return OperatorResult(
                    {"success": True, "message": f"{len(names)} checks {what}", "checks": names},
                    None,
                    f"all {len(names)} checks {what} by {user!r}" + (f" ({reason})" if reason else ""),
                    True,
                )
            audit = monitor.silence(check, float(duration), user, reason)
            return OperatorResult(
                {"success": True, "message": f"{check} {audit.action} for {audit.detail}", "check": check},
                None,
                f"check {check} {audit.action} {audit.detail} by {user!r}",
                True,
            )
        raise ValueError(f"unknown action {action!r} (expected {ACK} or {SILENCE})")
    except (UnknownCheckError, ValueError) as exc:
        return OperatorResult({"success": False, "message": str(exc)}, None, f"{action} refused: {exc}", False)
