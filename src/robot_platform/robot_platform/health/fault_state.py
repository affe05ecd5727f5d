"""Per-check fault state machine: OK -> PENDING -> ACTIVE -> CLEARING -> OK.

Why: a raw condition ("speed below half the command") is noisy. Raising an alert the first tick it
holds and clearing it the first tick it does not would flap. The machine only raises after the
condition held for ``debounce_s`` (PENDING) and only clears after it stayed away for ``clear_s``
(CLEARING); a relapse while CLEARING returns to ACTIVE with the same alert, so a signal oscillating
around a threshold raises one alert, not one per oscillation. (Checks add value hysteresis on top:
separate raise and clear thresholds.)

Time is injected: :meth:`FaultStateMachine.update` takes ``now`` (seconds, any monotonic origin), so the
machine is deterministic in tests and never reads a clock itself. Every state change, and a severity
change while ACTIVE, is returned as a :class:`FaultEvent` carrying the stable fault code and severity.

Restart identity (:meth:`FaultStateMachine.restore`): a new process takes over an alert the previous one
raised (persisted by :mod:`alert_state`) instead of starting at OK and raising a duplicate under a new
id. The machine starts ACTIVE with the old ``alert_id`` inside a grace window: observations that do not
hold are ignored while the window lasts (a freshly started check has not seen data yet); the condition
holding for ``debounce_s`` *confirms* the alert (same id, an ACTIVE -> ACTIVE event with
``restored=True``); a window that ends with the condition not holding *clears* it (ACTIVE -> OK,
``restored=True``). A condition still holding when the window ends keeps the alert until it is
confirmed or stops holding, so a slow start-up never turns into clear-then-raise.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

# Alert.SEVERITY_* values (robot_platform_interfaces/msg/Alert); kept here so this module needs no ROS.
SEVERITY_INFO = 0
SEVERITY_WARN = 1
SEVERITY_ERROR = 2
SEVERITY_CRITICAL = 3
SEVERITY_NAMES = {
    "info": SEVERITY_INFO,
    "warn": SEVERITY_WARN,
    "error": SEVERITY_ERROR,
    "critical": SEVERITY_CRITICAL,
}


class FaultState(enum.Enum):
    """States of one check's fault. ``value`` is the number exported to Prometheus."""

    OK = 0
    PENDING = 1
    ACTIVE = 2
    CLEARING = 3

    @property
    def faulted(self) -> bool:
        """True while an alert is raised (ACTIVE or CLEARING)."""
        return self in (FaultState.ACTIVE, FaultState.CLEARING)


@dataclass(frozen=True)
class FaultSpec:
    """Static description of a fault: its stable code, default severity and timing.

    Attributes:
        code: stable fault code, e.g. ``TOPIC_SILENT.scan``; consoles and rules key on it.
        severity: default Alert severity (0..3) when the condition does not say otherwise.
        debounce_s: the condition must hold this long before the fault becomes ACTIVE (0: at once).
        clear_s: the condition must stay away this long before an ACTIVE fault clears (0: at once).
    """

    code: str
    severity: int = SEVERITY_WARN
    debounce_s: float = 0.0
    clear_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.code:
            raise ValueError("fault code must not be empty")
        if self.severity not in (SEVERITY_INFO, SEVERITY_WARN, SEVERITY_ERROR, SEVERITY_CRITICAL):
            raise ValueError(f"severity {self.severity} is not one of 0..3 (Alert.SEVERITY_*)")
        if self.debounce_s < 0 or self.clear_s < 0:
            raise ValueError("debounce_s and clear_s must be >= 0")


@dataclass(frozen=True)
class FaultEvent:
    """One transition of a fault state machine.

    ``alert_id`` is set from the PENDING->ACTIVE transition until the fault is back to OK; the raise
    and the clear of one occurrence share it. ``previous == state`` only for a severity change.
    """

    code: str
    severity: int
    previous: FaultState
    state: FaultState
    at: float
    alert_id: str
    message: str
    values: Mapping[str, str] = field(default_factory=dict)
    restored: bool = False  # the event ends a restart grace window (confirmed: ACTIVE->ACTIVE, or cleared)

    @property
    def raises(self) -> bool:
        """This event starts an alert (send Alert with active=true)."""
        return self.previous is FaultState.PENDING and self.state is FaultState.ACTIVE

    @property
    def clears(self) -> bool:
        """This event ends an alert (send Alert with active=false)."""
        return self.previous.faulted and self.state is FaultState.OK

    @property
    def escalates(self) -> bool:
        """The severity of an ACTIVE fault changed (send Alert with active=true, same alert_id)."""
        return self.previous is FaultState.ACTIVE and self.state is FaultState.ACTIVE

    @property
    def alert_relevant(self) -> bool:
        """The event changes what an operator sees (raise, clear or severity change)."""
        return self.raises or self.clears or self.escalates


class FaultStateMachine:
    """Debounce and hysteresis for one check's boolean condition.

    Args:
        spec: code, default severity and timing.
        new_id: factory of alert ids (UUID4 strings by default; injected in tests).
    """

    def __init__(self, spec: FaultSpec, new_id: Callable[[], str] | None = None) -> None:
        self.spec = spec
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self.state = FaultState.OK
        self.since: float | None = None  # when the current state was entered
        self.severity = spec.severity
        self.alert_id = ""
        self.message = ""
        self.values: dict[str, str] = {}
        self.raised_at: float | None = None
        self.transitions = 0
        self.raise_count = 0
        self.restore_until: float | None = None  # end of the restart grace window (see restore())
        self._restore_seen: float | None = None  # since when the condition holds inside that window

    @property
    def restoring(self) -> bool:
        """True while an alert taken over from a previous process waits for confirmation."""
        return self.restore_until is not None

    def restore(
        self,
        alert_id: str,
        now: float,
        grace_s: float,
        *,
        severity: int,
        message: str = "",
        raised_at: float | None = None,
    ) -> None:
        """Take over ``alert_id`` raised by a previous process: ACTIVE until confirmed or the grace ends.

        Only valid on a fresh machine (state OK); see the module docstring for the rules.
        """
        if self.state is not FaultState.OK:
            raise ValueError(f"{self.spec.code}: restore() needs a machine in OK, not {self.state.name}")
        if not alert_id:
            raise ValueError("alert_id must not be empty")
        if severity not in (SEVERITY_INFO, SEVERITY_WARN, SEVERITY_ERROR, SEVERITY_CRITICAL):
            raise ValueError(f"severity {severity} is not one of 0..3 (Alert.SEVERITY_*)")
        self.state, self.since, self.alert_id, self.severity = FaultState.ACTIVE, now, alert_id, severity
        self.message = message
        self.raised_at = now if raised_at is None else raised_at
        self.restore_until = now + max(0.0, grace_s)
        self._restore_seen = None

    def update(
        self,
        now: float,
        faulty: bool,
        *,
        severity: int | None = None,
        message: str = "",
        values: Mapping[str, str] | None = None,
    ) -> list[FaultEvent]:
        """Feed one observation of the condition at time ``now``; return the transitions it caused.

        ``severity`` overrides the spec's default while the condition holds (battery low vs critical).
        ``message`` and ``values`` describe the latest observation and travel with the events.
        """
        if message:
            self.message = message
        if values is not None:
            self.values = dict(values)
        sev = self.spec.severity if severity is None else severity
        if self.restore_until is not None:
            return self._update_restored(now, faulty, sev)
        events: list[FaultEvent] = []
        state = self.state
        if state is FaultState.OK:
            if faulty:
                self.severity = sev
                events.append(self._go(FaultState.PENDING, now))
                if self.spec.debounce_s <= 0:
                    events.append(self._raise(now))
        elif state is FaultState.PENDING:
            if not faulty:
                events.append(self._go(FaultState.OK, now))
            else:
                self.severity = sev
                if self._elapsed(now) >= self.spec.debounce_s:
                    events.append(self._raise(now))
        elif state is FaultState.ACTIVE:
            if not faulty:
                events.append(self._go(FaultState.CLEARING, now))
                if self.spec.clear_s <= 0:
                    events.append(self._clear(now))
            elif sev != self.severity:
                self.severity = sev
                events.append(self._event(FaultState.ACTIVE, FaultState.ACTIVE, now))
        elif state is FaultState.CLEARING:
            if faulty:
                events.append(self._go(FaultState.ACTIVE, now))
                if sev != self.severity:
                    self.severity = sev
                    events.append(self._event(FaultState.ACTIVE, FaultState.ACTIVE, now))
            elif self._elapsed(now) >= self.spec.clear_s:
                events.append(self._clear(now))
        return events

    def _update_restored(self, now: float, faulty: bool, sev: int) -> list[FaultEvent]:
        assert self.restore_until is not None
        if faulty:
            if self._restore_seen is None:
                self._restore_seen = now
            if now - self._restore_seen < self.spec.debounce_s:
                return []
            self.restore_until = self._restore_seen = None
            self.severity = sev
            return [self._event(FaultState.ACTIVE, FaultState.ACTIVE, now, restored=True)]
        self._restore_seen = None
        if now < self.restore_until:
            return []
        event = self._clear(now)
        return [replace(event, restored=True)]

    def reset(self, now: float) -> list[FaultEvent]:
        """Force the machine back to OK (check removed or disabled); clears a raised alert."""
        if self.state is FaultState.OK:
            return []
        if self.state.faulted:
            return [self._clear(now)]
        return [self._go(FaultState.OK, now)]

    def _elapsed(self, now: float) -> float:
        # A clock that steps back (should not happen with a monotonic clock) counts as no time passed.
        return max(0.0, now - self.since) if self.since is not None else 0.0

    def _raise(self, now: float) -> FaultEvent:
        self.alert_id = self._new_id()
        self.raised_at = now
        self.raise_count += 1
        return self._go(FaultState.ACTIVE, now)

    def _clear(self, now: float) -> FaultEvent:
        event = self._go(FaultState.OK, now)
        self.alert_id = ""
        self.raised_at = None
        self.restore_until = self._restore_seen = None
        return event

    def _go(self, state: FaultState, now: float) -> FaultEvent:
        previous, self.state, self.since = self.state, state, now
        self.transitions += 1
        return self._event(previous, state, now)

    def _event(self, previous: FaultState, state: FaultState, now: float, restored: bool = False) -> FaultEvent:
        return FaultEvent(
            code=self.spec.code,
            severity=self.severity,
            previous=previous,
            state=state,
            at=now,
            alert_id=self.alert_id,
            message=self.message,
            values=dict(self.values),
            restored=restored,
        )
