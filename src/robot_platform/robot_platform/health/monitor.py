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
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from robot_platform.health.alert_state import SavedAlert
from robot_platform.health.checks import HealthCheck
from robot_platform.health.fault_state import FaultEvent, FaultState
from robot_platform.health.flapping import FLAP_CHECK_SUFFIX, FLAP_CODE_PREFIX, FlapChange
from robot_platform.health.operator_actions import RAISED_AT, OperatorActions, ack_values
from robot_platform.health.records import AlertRecord, AuditRecord, CheckMeta, TickResult
from robot_platform.health.tree_builder import HealthTree

AUDIT_MAX = 200  # acknowledge/silence records kept in memory (drop-oldest); the node also logs each one
__all__ = ["AlertRecord", "AuditRecord", "CheckMeta", "HealthMonitor", "TickResult"]


class HealthMonitor(OperatorActions):
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
        self._announce: list[AlertRecord] = []  # silence start/end records, sent with the next tick
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
        gap = self.health.hub.load.on_tick(self.clock())  # before any check: they ask it what to trust
        self.health.tree.tick()
        self.tick_count += 1
        now = self.clock()
        alerts = [self._orphan_clear(o) for o in self._orphans]
        notices = self._silences_ended(now) + self._announce
        self._orphans, self._announce = [], []
        flapped: list[str] = []
        for check in self.health.checks:
            if check.flap is not None:
                change = check.flap.update(now, check.fault.state.faulted)
                if change is FlapChange.STARTED:
                    flapped.append(check.name)
                alerts += self._reconcile_flap(check, change)
            flapping = check.flap is not None and check.flap.flapping
            if not flapping and (record := self._reconcile(check, now)) is not None:
                alerts.append(record)
        return TickResult(
            list(self._collected), alerts, time.perf_counter() - start, flapped, gap.length if gap else 0.0, notices
        )

    def _reconcile_flap(self, check: HealthCheck, change: FlapChange) -> list[AlertRecord]:
        """Fold a flapping check's alert into one FLAPPING alert, and end it when the check settles."""
        meta, fault = self.meta[check.name], check.fault
        assert check.flap is not None
        out: list[AlertRecord] = []
        if change is FlapChange.STARTED:
            if meta.published_id:  # its own alert ends here; the FLAPPING alert carries the story on
                record = self._record(check, meta.published_id, active=False)
                out.append(
                    replace(record, message=f"folded into {FLAP_CODE_PREFIX}{fault.spec.code}: {record.message}")
                )
                meta.published_id, meta.published_severity, meta.published_ack, meta.restored = "", -1, False, None
            if not self.silenced(check.name):
                meta.flap_id, meta.flap_stamp = str(uuid.uuid4()), self.wall_clock()
                out.append(self._flap_record(check, active=True))
        elif change is FlapChange.STOPPED and meta.flap_id:
            out.append(self._flap_record(check, active=False))
            meta.flap_id = ""
        return out

    def _flap_record(self, check: HealthCheck, active: bool) -> AlertRecord:
        meta, fault, flap = self.meta[check.name], check.fault, check.flap
        assert flap is not None
        now = self.clock()
        acked = bool(meta.ack_by) and meta.ack_alert_id == meta.flap_id
        if active:
            message = (
                f"{check.name} raised and cleared {flap.count(now)} times in {flap.window_s:g}s: its alerts are "
                f"held until it settles (last: {fault.message})"
            )
        else:
            message = f"cleared: {check.name} settled ({flap.count(now)} changes in {flap.window_s:g}s)"
        return AlertRecord(
            robot_id=self.robot_id,
            alert_id=meta.flap_id,
            code=f"{FLAP_CODE_PREFIX}{fault.spec.code}",
            severity=fault.spec.severity,
            message=message,
            source=f"{self.source}/{check.name}",
            active=active,
            acknowledged=acked,
            acknowledged_by=meta.ack_by if acked else "",
            values={
                **ack_values(meta, acked),
                RAISED_AT: f"{meta.flap_stamp:.3f}",
                "check": check.name,
                "code": fault.spec.code,
                "changes": str(flap.count(now)),
                "window_s": f"{flap.window_s:g}",
                "state": fault.state.name,
            },
            stamp=self.wall_clock(),
            check=check.name,
        )

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
            values={**fault.values, **ack_values(meta, acked), RAISED_AT: f"{meta.raised_stamp:.3f}"},
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
            if meta.flap_id:  # not carried over: the next process clears it (flapping is re-detected)
                out.append(
                    SavedAlert(
                        check=check.name + FLAP_CHECK_SUFFIX,
                        alert_id=meta.flap_id,
                        code=FLAP_CODE_PREFIX + fault.spec.code,
                        severity=fault.spec.severity,
                        raised_stamp=meta.flap_stamp,
                        message=f"{check.name} flapping",
                    )
                )
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
        if alert.check.endswith(FLAP_CHECK_SUFFIX):
            why = "flapping state is not carried over a restart (it is detected again if it goes on)"
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
            values={RAISED_AT: f"{alert.raised_stamp:.3f}"},
            stamp=self.wall_clock(),
            check=alert.check,
        )
