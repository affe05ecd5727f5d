"""Operator actions on the monitor: acknowledge an alert, silence a check; silences as history records.

Why silences are announced: an operator who sees no TOPIC_SILENT.scan must be able to tell "the scan is
fine" from "bob silenced scan_silent an hour ago". Like Icinga's DOWNTIMESTART / DOWNTIMEEND
notifications, a silence is published as an informational alert ``SILENCED.<code>`` (active while it runs,
cleared when it is lifted, replaced or expires) through every sink, so it is in the alert history
(fleet.alerts.query) with who set it, when, and until when. Its id is derived from the check and the time
the silence was set, so a restarted node (which restores running silences) ends the same record.

A mixin of :class:`monitor.HealthMonitor` (which owns ``meta``, ``health``, the clocks and ``_announce``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from robot_platform.health.alert_state import NOTE_MAX, SavedSilence
from robot_platform.health.errors import UnknownCheckError
from robot_platform.health.fault_state import SEVERITY_INFO
from robot_platform.health.records import AlertRecord, AuditRecord, CheckMeta

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from robot_platform.health.checks import HealthCheck
    from robot_platform.health.tree_builder import HealthTree

# Alert.values key with the wall-clock raise time of the alert (kept across restarts through alert_state):
# every state of an alert carries it, so history (fleet.alerts.query) knows when it began from any message.
RAISED_AT = "raised_at"
SILENCE_CODE_PREFIX = "SILENCED."
SILENCE_MAX_S = 7 * 24 * 3600.0
ACK_NOTE = "ack_note"  # Alert.values key: the note given with the acknowledgement


def ack_values(meta: CheckMeta, acked: bool) -> dict[str, str]:
    """The acknowledgement's note as Alert.values (history shows why someone acknowledged)."""
    return {ACK_NOTE: meta.ack_note} if acked and meta.ack_note else {}


class OperatorActions:
    """Acknowledge and silence (see the module docstring)."""

    health: HealthTree
    meta: dict[str, CheckMeta]
    audit: deque[AuditRecord]
    robot_id: str
    source: str
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    _announce: list[AlertRecord]

    if TYPE_CHECKING:  # provided by HealthMonitor

        def _record(self, check: HealthCheck, alert_id: str, active: bool) -> AlertRecord: ...

        def _flap_record(self, check: HealthCheck, active: bool) -> AlertRecord: ...

    def silenced(self, name: str, now: float | None = None) -> bool:
        meta = self.meta[name]
        now = self.clock() if now is None else now
        return meta.silenced_until is not None and now < meta.silenced_until

    def acknowledge(self, alert_id: str, user: str, note: str = "") -> AlertRecord:
        """Mark an active alert acknowledged by ``user`` (with an optional ``note``); returns the updated
        alert to publish."""
        if not user:
            raise ValueError("user must not be empty (acknowledgements are audited)")
        note = note[:NOTE_MAX]
        for check in self.health.checks:
            meta = self.meta[check.name]
            if alert_id and meta.flap_id == alert_id:
                meta.ack_by, meta.ack_at, meta.ack_alert_id, meta.ack_note = user, self.wall_clock(), alert_id, note
                self.audit.append(AuditRecord(meta.ack_at, user, "acknowledge", check.name, alert_id))
                return self._flap_record(check, active=True)
            if alert_id and check.fault.state.faulted and check.fault.alert_id == alert_id:
                meta.ack_by, meta.ack_at, meta.ack_alert_id, meta.ack_note = user, self.wall_clock(), alert_id, note
                self.audit.append(AuditRecord(meta.ack_at, user, "acknowledge", check.name, alert_id))
                meta.published_ack = True
                return self._record(check, alert_id, active=True)
        raise UnknownCheckError("active alert", alert_id)

    def running_silences(self) -> list[SavedSilence]:
        """The silences still running (what a restarted node must keep honouring)."""
        now = self.clock()
        return [
            SavedSilence(
                name, meta.silenced_until_wall, meta.silenced_by, meta.silenced_at or 0.0, meta.silenced_reason
            )
            for name, meta in sorted(self.meta.items())
            if meta.silenced_until is not None and now < meta.silenced_until and meta.silenced_until_wall is not None
        ]

    def restore_silences(self, silences: Iterable[SavedSilence]) -> list[str]:
        """Re-apply a previous process's running silences (checks that no longer exist are skipped);
        returns the names of the checks silenced again."""
        now, wall_now = self.clock(), self.wall_clock()
        restored = []
        for silence in silences:
            meta = self.meta.get(silence.check)
            if meta is None or silence.until <= wall_now:
                continue
            meta.silenced_until = now + (silence.until - wall_now)
            meta.silenced_until_wall, meta.silenced_by, meta.silenced_at = silence.until, silence.by, silence.at
            meta.silenced_reason = silence.reason
            meta.silence_open = True  # announced by the previous process; this one ends it
            restored.append(silence.check)
        return restored

    def silence(self, check_name: str, duration_s: float, user: str, reason: str = "") -> AuditRecord:
        """Silence ``check_name`` for ``duration_s`` seconds (0 lifts a silence); ``reason`` (e.g.
        "maintenance") goes into the SILENCED.* record."""
        if check_name not in self.meta:
            raise UnknownCheckError("check", check_name)
        if not user:
            raise ValueError("user must not be empty (silences are audited)")
        if not 0.0 <= duration_s <= SILENCE_MAX_S:
            raise ValueError(f"duration_s must be within 0..{SILENCE_MAX_S:g}")
        meta = self.meta[check_name]
        if meta.silence_open:
            why = f"lifted by {user}" if duration_s <= 0 else f"replaced by a new silence by {user}"
            self._announce.append(self._silence_record(check_name, active=False, why=why))
            meta.silence_open = False
        meta.silenced_until = self.clock() + duration_s if duration_s > 0 else None
        meta.silenced_by, meta.silenced_at, meta.silenced_reason = user, self.wall_clock(), reason[:NOTE_MAX]
        meta.silenced_until_wall = meta.silenced_at + duration_s if duration_s > 0 else None
        record = AuditRecord(
            meta.silenced_at,
            user,
            "silence" if duration_s > 0 else "unsilence",
            check_name,
            f"{duration_s:g}s",
        )
        self.audit.append(record)
        if duration_s > 0:
            self._announce.append(self._silence_record(check_name, active=True))
            meta.silence_open = True
        return record

    def _silences_ended(self, now: float) -> list[AlertRecord]:
        """End records of silences that ran out (called by every tick)."""
        out = []
        for name, meta in self.meta.items():
            if meta.silence_open and (meta.silenced_until is None or now >= meta.silenced_until):
                out.append(self._silence_record(name, active=False, why="expired"))
                meta.silence_open = False
        return out

    def _silence_record(self, name: str, active: bool, why: str = "") -> AlertRecord:
        meta = self.meta[name]
        code = next(c.fault.spec.code for c in self.health.checks if c.name == name)
        at = meta.silenced_at or 0.0
        until = meta.silenced_until_wall
        if active:
            message = f"{name} silenced by {meta.silenced_by} for {(until or at) - at:.0f}s: its alerts are not sent"
            if meta.silenced_reason:
                message += f" (reason: {meta.silenced_reason})"
        else:
            message = f"cleared: silence of {name} by {meta.silenced_by} ended ({why})"
        return AlertRecord(
            robot_id=self.robot_id,
            alert_id=f"silence.{name}.{int(at * 1000)}",
            code=SILENCE_CODE_PREFIX + code,
            severity=SEVERITY_INFO,
            message=message,
            source=f"{self.source}/{name}",
            active=active,
            acknowledged=False,
            acknowledged_by="",
            values={RAISED_AT: f"{at:.3f}", "check": name, "by": meta.silenced_by, "until": f"{until or 0.0:.3f}",
                    "reason": meta.silenced_reason},
            stamp=self.wall_clock(),
            check=name,
        )
