"""Pure content builders for the monitor's outputs: diagnostics, RViz markers, UI tree snapshot.

Why pure: the node only copies these plain structures into ROS messages, so what an operator sees in
rqt_robot_monitor, RViz and the web UI is unit-tested without a ROS graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import py_trees

from robot_platform.health.checks import HealthCheck
from robot_platform.health.fault_state import SEVERITY_CRITICAL, SEVERITY_ERROR, SEVERITY_WARN, FaultState
from robot_platform.health.monitor import HealthMonitor

# diagnostic_msgs/DiagnosticStatus levels (bytes in the message).
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3
SNAPSHOT_VERSION = 1
# RGBA per Alert severity for markers: info grey, warn amber, error red, critical magenta.
SEVERITY_COLORS = {
    0: (0.7, 0.7, 0.7, 0.9),
    1: (1.0, 0.65, 0.0, 0.95),
    2: (1.0, 0.1, 0.1, 1.0),
    3: (0.9, 0.0, 0.9, 1.0),
}
MARKER_LINE_SPACING_M = 0.25
MARKER_BASE_HEIGHT_M = 1.0
MARKER_TEXT_HEIGHT_M = 0.18


def diag_level(check: HealthCheck) -> int:
    """DiagnosticStatus level of a check: OK unless its fault is raised; ERROR for error/critical."""
    if not check.fault.state.faulted:
        return DIAG_OK
    if check.fault.severity >= SEVERITY_ERROR:
        return DIAG_ERROR
    return DIAG_WARN if check.fault.severity >= SEVERITY_WARN else DIAG_OK


@dataclass(frozen=True)
class DiagStatus:
    """Content of one diagnostic_msgs/DiagnosticStatus."""

    level: int
    name: str
    message: str
    hardware_id: str
    values: list[tuple[str, str]] = field(default_factory=list)


def diagnostics(monitor: HealthMonitor) -> list[DiagStatus]:
    """One status per check, named ``health_monitor_tree: <group>/<check>`` (aggregator-friendly path),
    plus a summary status ``health_monitor_tree: summary`` carrying the worst level."""
    out: list[DiagStatus] = []
    for check in monitor.health.checks:
        fault = check.fault
        values = [
            ("state", fault.state.name),
            ("code", fault.spec.code),
            ("severity", str(fault.severity)),
            ("alert_id", fault.alert_id),
            ("silenced", str(monitor.silenced(check.name)).lower()),
        ]
        if fault.restoring:  # taken over after a restart, waiting to be seen again (still active)
            values.append(("restored_until_s", f"{max(0.0, (fault.restore_until or 0.0) - monitor.clock()):.1f}"))
        values.extend(sorted(fault.values.items()))
        message = check.last.message if check.last is not None else "not evaluated yet"
        out.append(
            DiagStatus(
                diag_level(check),
                f"{monitor.source}: {check.group}/{check.name}",
                f"{fault.state.name}: {message}",
                monitor.robot_id,
                values,
            )
        )
    worst = max((s.level for s in out), default=DIAG_OK)
    active = [c.fault.spec.code for c in monitor.health.checks if c.fault.state.faulted]
    out.append(
        DiagStatus(
            worst,
            f"{monitor.source}: summary",
            f"{len(active)} active fault(s)" + (f": {', '.join(active)}" if active else ""),
            monitor.robot_id,
            [("ticks", str(monitor.tick_count))],
        )
    )
    return out


@dataclass(frozen=True)
class MarkerSpec:
    """Content of one visualization_msgs/Marker (TEXT_VIEW_FACING above the robot)."""

    ns: str
    id: int
    frame_id: str
    z: float
    text: str
    color: tuple[float, float, float, float]
    scale_z: float = MARKER_TEXT_HEIGHT_M


def markers(monitor: HealthMonitor, frame_id: str = "base_link") -> list[MarkerSpec]:
    """Text markers for raised faults, most severe on top. The node sends a DELETEALL first, so
    cleared faults disappear."""
    faulted = [c for c in monitor.health.checks if c.fault.state.faulted]
    faulted.sort(key=lambda c: (c.fault.severity, c.name))
    out = []
    for i, check in enumerate(faulted):
        fault = check.fault
        tag = "CRIT" if fault.severity == SEVERITY_CRITICAL else ("ERR" if fault.severity == SEVERITY_ERROR else "WARN")
        out.append(
            MarkerSpec(
                "health_faults",
                i,
                frame_id,
                MARKER_BASE_HEIGHT_M + i * MARKER_LINE_SPACING_M,
                f"[{tag}] {fault.spec.code}: {fault.message}",
                SEVERITY_COLORS[fault.severity],
            )
        )
    return out


def _check_fields(monitor: HealthMonitor, check: HealthCheck) -> dict[str, Any]:
    fault, meta = check.fault, monitor.meta[check.name]
    silenced = monitor.silenced(check.name)
    return {
        "kind": check.kind,
        "group": check.group,
        "code": fault.spec.code,
        "state": fault.state.name,
        "state_value": fault.state.value,
        "severity": fault.severity,
        "since": fault.since,
        # Wall clock of the published raise (0 if none): a page that opens later shows the alert's real age.
        "raised_stamp": meta.raised_stamp if meta.published_id and meta.published_id == fault.alert_id else 0.0,
        "alert_id": fault.alert_id,
        "message": check.last.message if check.last is not None else "",
        "values": dict(fault.values),
        "acknowledged_by": meta.ack_by if meta.ack_alert_id and meta.ack_alert_id == fault.alert_id else "",
        "silenced": silenced,
        "silenced_by": meta.silenced_by if silenced else "",
        "raise_count": fault.raise_count,
    }


def _node(monitor: HealthMonitor, behaviour: py_trees.behaviour.Behaviour) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": behaviour.name,
        "type": type(behaviour).__name__,
        "status": behaviour.status.value,
        "feedback": behaviour.feedback_message,
    }
    if isinstance(behaviour, HealthCheck):
        entry.update(_check_fields(monitor, behaviour))
    else:
        entry["children"] = [_node(monitor, child) for child in behaviour.children]
    return entry


def tree_snapshot(monitor: HealthMonitor) -> dict[str, Any]:
    """JSON/msgpack-able snapshot of the whole tree for the UI (``robots.<id>.health``)."""
    checks = monitor.health.checks
    return {
        "version": SNAPSHOT_VERSION,
        "robot_id": monitor.robot_id,
        "stamp": monitor.wall_clock(),
        "tick": monitor.tick_count,
        "active": sorted(c.fault.spec.code for c in checks if c.fault.state.faulted),
        "counts": {s.name: sum(1 for c in checks if c.fault.state is s) for s in FaultState},
        "root": _node(monitor, monitor.health.tree.root),
    }
