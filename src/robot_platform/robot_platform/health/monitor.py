"""The health monitor: ticks the tree and decides which alerts to send, with acknowledge and silence.

Why separate from the checks: what an operator is told is a *publication* decision, not a detection
one. Each tick the monitor compares every check's fault with what it last published and emits
exactly the alert messages needed to bring consoles up to date: a raise (active=true) for a new
fault, a re-send when the severity changes or an operator acknowledges it, a clear (active=false,
same alert_id) when the fault ends. A silenced check keeps being evaluated (the tree, diagnostics and
metrics still show it) but does not raise alerts until the silence expires; a fault that ends while
silenced still sends its clear if its raise was sent.

Restart identity: :meth:`HealthMonitor.active_alerts` is what the node saves (:mod:`alert_state`) after
every tick and acknowledge that changed it - the alerts whose raise was *published*. A new process calls
:meth:`HealthMonitor.restore` with them before its first tick: a check that still exists (same code)
takes its alert over (same ``alert_id``, acknowledgement kept, counted as active in diagnostics and
metrics) for a grace window of ``restart_grace_s`` + the check's ``debounce_s``. Confirmed within it,
the alert is announced once more from this process (same id; on NATS the same Nats-Msg-Id as the last
state the previous process sent, so JetStream's duplicate window drops it); not seen through it, it is
cleared with a message saying so. An alert of a check that is gone (or now has another code) is cleared
on the first tick. The clear of an alert id always has its own Nats-Msg-Id (``<id>.clear...``).

Plain Python: the node injects the clocks (``clock`` monotonic for logic, ``wall_clock`` for stamps).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

from robot_platform.health.alert_state import SavedAlert, SavedSilence
from robot_platform.health.checks import HealthCheck
from robot_platform.health.errors import UnknownCheckError
from robot_platform.health.fault_state import FaultEvent, FaultState
from robot_platform.health.tree_builder import HealthTree

AUDIT_MAX = 200  # acknowledge/silence records kept in memory (drop-oldest); the node also logs each one
SILENCE_MAX_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class AlertRecord:
    """Content of one robot_platform_interfaces/Alert message (stamp in wall-clock seconds)."""

    robot_id: str
    alert_id: str
    code: str
    severity: int
    message: str
    source: str
    active: bool
    acknowledged: bool
    acknowledged_by: str
    values: dict[str, str]
    stamp: float
    check: str

    def to_dict(self) -> dict[str, object]:
        """JSON/msgpack-able dict with the Alert field names (plus ``check``)."""
        return asdict(self)


@dataclass
class CheckMeta:
    """Publication, acknowledge and silence bookkeeping of one check."""

    published_id: str = ""
    published_severity: int = -1
    published_ack: bool = False
    ack_by: str = ""
    ack_at: float | None = None
    ack_alert_id: str = ""
    silenced_until: float | None = None  # monotonic
    silenced_until_wall: float | None = None  # the same end on the wall clock (what survives a restart)
    silenced_by: str = ""
    silenced_at: float | None = None  # wall clock
    raised_stamp: float = 0.0  # wall clock of the published raise
    published_message: str = ""  # message of the last active state sent (saved for the next process)
    restored: SavedAlert | None = None  # taken over from the previous process, not yet confirmed or cleared


@dataclass(frozen=True)
class AuditRecord:
    """Who did what, when (wall clock), to which check or alert."""

    at: float
    user: str
    action: str
    target: str
    detail: str = ""


@dataclass
class TickResult:
    """What one tick produced: state transitions (for metrics and logs) and alerts to publish."""

    events: list[tuple[HealthCheck, FaultEvent]] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    duration_s: float = 0.0


class HealthMonitor:
    """Owns a built :class:`HealthTree`; :meth:`tick` runs one evaluation round.

    Args:
        tree: built by :func:`tree_builder.build_tree` with ``sink=monitor.collect`` (use :meth:`create`).
        robot_id: goes into every alert.
        source: node name prefix of ``Alert.source`` (``<source>/<check>``).
        clock: monotonic seconds, the same clock the checks use.
        wall_clock: seconds since the epoch, for message stamps and audit records.
    """

    def __init__(
        self,
        tree: HealthTree,
        robot_id: str,
        *,
        source: str = "health_monitor_tree",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.health = tree
        self.robot_id = robot_id
        self.source = source
        self.clock = clock
        self.wall_clock = wall_clock
        self.meta: dict[str, CheckMeta] = {c.name: CheckMeta() for c in tree.checks}
        self.audit: deque[AuditRecord] = deque(maxlen=AUDIT_MAX)
        self.tick_count = 0
        self._collected: list[tuple[HealthCheck, FaultEvent]] = []
        self._orphans: list[SavedAlert] = []  # restored alerts of checks that are gone: cleared next tick
        for check in tree.checks:
            check.sink = self.collect

    def collect(self, check: HealthCheck, events: list[FaultEvent]) -> None:
        """Event sink the checks call during a tick."""
        self._collected.extend((check, e) for e in events)

    def tick(self) -> TickResult:
        start = time.perf_counter()
        self._collected = []
        self.health.tree.tick()
        self.tick_count += 1
        now = self.clock()
        alerts = [self._orphan_clear(o) for o in self._orphans]
        self._orphans = []
        alerts += [a for c in self.health.checks if (a := self._reconcile(c, now)) is not None]
        return TickResult(list(self._collected), alerts, time.perf_counter() - start)

    def silenced(self, name: str, now: float | None = None) -> bool:
        meta = self.meta[name]
        now = self.clock() if now is None else now
        return meta.silenced_until is not None and now < meta.silenced_until

    def _record(self, check: HealthCheck, alert_id: str, active: bool) -> AlertRecord:
        meta, fault = self.meta[check.name], check.fault
        acked = bool(meta.ack_by) and meta.ack_alert_id == alert_id
        if active:
            meta.published_message = fault.message
        return AlertRecord(
            robot_id=self.robot_id,
            alert_id=alert_id,
            code=fault.spec.code,
            severity=fault.severity,
            message=fault.message if active else f"cleared: {fault.message}",
            source=f"{self.source}/{check.name}",
            active=active,
            acknowledged=acked,
            acknowledged_by=meta.ack_by if acked else "",
            values=dict(fault.values),
            stamp=self.wall_clock(),
            check=check.name,
        )

    def _reconcile(self, check: HealthCheck, now: float) -> AlertRecord | None:
        meta, fault = self.meta[check.name], check.fault
        if meta.published_id and (not fault.state.faulted or fault.alert_id != meta.published_id):
            record = self._record(check, meta.published_id, active=False)
            if meta.restored is not None:  # taken over after a restart and never seen again
                why = f"not seen again within the restart grace window (was: {meta.restored.message})"
                record = replace(record, message=f"cleared after a restart of {self.source}: {why}")
                meta.restored = None
            meta.published_id, meta.published_severity, meta.published_ack = "", -1, False
            return record  # a new fault with another id is raised on the next tick
        if not fault.state.faulted:
            return None
        if meta.restored is not None and not fault.restoring:  # confirmed: this process announces it once
            meta.restored = None
            meta.published_severity = fault.severity
            meta.published_ack = meta.ack_alert_id == fault.alert_id
            return self._record(check, fault.alert_id, active=True)
        if not meta.published_id:
            if self.silenced(check.name, now):
                return None
            meta.published_id = fault.alert_id
            meta.raised_stamp = self.wall_clock()
        elif meta.published_severity == fault.severity and meta.published_ack == (meta.ack_alert_id == fault.alert_id):
            return None
        meta.published_severity = fault.severity
        meta.published_ack = meta.ack_alert_id == fault.alert_id
        return self._record(check, fault.alert_id, active=True)

    # ---- restart identity ---------------------------------------------------------------------------

    def active_alerts(self) -> list[SavedAlert]:
        """The published, still active alerts (what the next process must take over or clear)."""
        out = list(self._orphans)
        for check in self.health.checks:
            meta, fault = self.meta[check.name], check.fault
            if not meta.published_id:
                continue
            acked = bool(meta.ack_by) and meta.ack_alert_id == meta.published_id
            out.append(
                SavedAlert(
                    check=check.name,
                    alert_id=meta.published_id,
                    code=fault.spec.code,
                    severity=meta.published_severity if meta.published_severity >= 0 else fault.severity,
                    raised_stamp=meta.raised_stamp,
                    message=meta.published_message,
                    acknowledged_by=meta.ack_by if acked else "",
                    acknowledged_at=meta.ack_at if acked else None,
                )
            )
        return out

    def restore(self, saved: Iterable[SavedAlert], grace_s: float) -> tuple[list[str], list[str]]:
        """Take over the alerts a previous process left active (call before the first tick).

        Returns ``(taken_over, to_clear)``: check names whose alert waits for confirmation, and check
        names whose alert is cleared on the next tick (the check is gone or reports another code).
        """
        now, wall_now = self.clock(), self.wall_clock()
        checks = {c.name: c for c in self.health.checks}
        taken, orphans = [], []
        for alert in saved:
            check = checks.get(alert.check)
            if check is None or check.fault.spec.code != alert.code or check.fault.state is not FaultState.OK:
                self._orphans.append(alert)
                orphans.append(alert.check)
                continue
            fault, meta = check.fault, self.meta[check.name]
            fault.restore(
                alert.alert_id,
                now,
                grace_s + fault.spec.debounce_s,
                severity=alert.severity,
                message=alert.message,
                raised_at=now - max(0.0, wall_now - alert.raised_stamp),
            )
            meta.published_id, meta.published_severity = alert.alert_id, alert.severity
            meta.raised_stamp, meta.restored, meta.published_message = alert.raised_stamp, alert, alert.message
            if alert.acknowledged_by:
                meta.ack_by, meta.ack_at, meta.ack_alert_id = (
                    alert.acknowledged_by,
                    alert.acknowledged_at,
                    alert.alert_id,
                )
            meta.published_ack = bool(alert.acknowledged_by)
            taken.append(check.name)
        return taken, orphans

    def _orphan_clear(self, alert: SavedAlert) -> AlertRecord:
        check = next((c for c in self.health.checks if c.name == alert.check), None)
        why = "is no longer in the health tree" if check is None else f"now reports {check.fault.spec.code}"
        return AlertRecord(
            robot_id=self.robot_id,
            alert_id=alert.alert_id,
            code=alert.code,
            severity=alert.severity,
            message=f"cleared after a restart of {self.source}: check {alert.check!r} {why} (was: {alert.message})",
            source=f"{self.source}/{alert.check}",
            active=False,
            acknowledged=bool(alert.acknowledged_by),
            acknowledged_by=alert.acknowledged_by,
            values={},
            stamp=self.wall_clock(),
            check=alert.check,
        )

    # ---- operator actions ---------------------------------------------------------------------------

    def acknowledge(self, alert_id: str, user: str) -> AlertRecord:
        """Mark an active alert acknowledged by ``user``; returns the updated alert to publish."""
        if not user:
            raise ValueError("user must not be empty (acknowledgements are audited)")
        for check in self.health.checks:
            meta = self.meta[check.name]
            if alert_id and check.fault.state.faulted and check.fault.alert_id == alert_id:
                meta.ack_by, meta.ack_at, meta.ack_alert_id = user, self.wall_clock(), alert_id
                self.audit.append(AuditRecord(meta.ack_at, user, "acknowledge", check.name, alert_id))
                meta.published_ack = True
                return self._record(check, alert_id, active=True)
        raise UnknownCheckError("active alert", alert_id)

    def running_silences(self) -> list[SavedSilence]:
        """The silences still running (what a restarted node must keep honouring)."""
        now = self.clock()
        return [
            SavedSilence(name, meta.silenced_until_wall, meta.silenced_by, meta.silenced_at or 0.0)
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
            restored.append(silence.check)
        return restored

    def silence(self, check_name: str, duration_s: float, user: str) -> AuditRecord:
        """Silence ``check_name`` for ``duration_s`` seconds (0 lifts a silence)."""
        if check_name not in self.meta:
            raise UnknownCheckError("check", check_name)
        if not user:
            raise ValueError("user must not be empty (silences are audited)")
        if not 0.0 <= duration_s <= SILENCE_MAX_S:
            raise ValueError(f"duration_s must be within 0..{SILENCE_MAX_S:g}")
        meta = self.meta[check_name]
        meta.silenced_until = self.clock() + duration_s if duration_s > 0 else None
        meta.silenced_by, meta.silenced_at = user, self.wall_clock()
        meta.silenced_until_wall = meta.silenced_at + duration_s if duration_s > 0 else None
        record = AuditRecord(
            meta.silenced_at,
            user,
            "silence" if duration_s > 0 else "unsilence",
            check_name,
            f"{duration_s:g}s",
        )
        self.audit.append(record)
        return record
