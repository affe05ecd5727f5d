"""What the monitor produces and keeps per check: alert records, bookkeeping, audit, tick results.

Why a module of its own: these are plain data shared by the monitor, its outputs and the node; keeping
them apart keeps monitor.py about decisions (when to raise, clear, fold, take over) only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from robot_platform.health.alert_state import SavedAlert
from robot_platform.health.checks import HealthCheck
from robot_platform.health.fault_state import FaultEvent


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
    ack_note: str = ""  # the operator's note with the acknowledgement (Alert.values "ack_note")
    silenced_until: float | None = None  # monotonic
    silenced_until_wall: float | None = None  # the same end on the wall clock (what survives a restart)
    silenced_by: str = ""
    silenced_at: float | None = None  # wall clock
    silenced_reason: str = ""  # why (maintenance, ...): Alert.values "reason" of the SILENCED.* record
    silence_open: bool = False  # a SILENCED.<code> record is out and not ended yet
    raised_stamp: float = 0.0  # wall clock of the published raise
    flap_id: str = ""  # the published FLAPPING alert of this check ("" while not flapping)
    flap_stamp: float = 0.0  # wall clock of its raise
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
    flap_started: list[str] = field(default_factory=list)  # checks that began flapping this tick
    starved_s: float = 0.0  # the monitor did not tick for this long before this tick (0: on time)
    notices: list[AlertRecord] = field(default_factory=list)  # SILENCED.<code> start/end (operator_actions)
