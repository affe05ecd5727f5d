"""The base of every check kind: a py_trees behaviour that turns cached data into fault-state transitions.

Each check is a small :class:`py_trees.behaviour.Behaviour`: ``__init__`` holds its config and the
caches it reads (see :mod:`sources`), ``update`` never blocks - it reads the caches, decides whether its
condition holds now (:meth:`HealthCheck.observe`) and feeds that to its :class:`FaultStateMachine`.
Status mapping: OK -> SUCCESS, PENDING -> RUNNING, ACTIVE/CLEARING -> FAILURE, so the tree's root
shows at a glance whether anything is wrong.

Value hysteresis (a clear threshold beyond the raise threshold) is applied by each kind, time hysteresis
(debounce, clear delay) in the state machine. The kinds: topic_checks.py (silence, rate), value_checks.py
(speed, battery, IMU and localization anomalies), system_checks.py (nodes, links, host); the catalogue
of them is check_kinds.py.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import py_trees
from py_trees.common import Status

from robot_platform.health.fault_state import (
    FaultEvent,
    FaultSpec,
    FaultState,
    FaultStateMachine,
)
from robot_platform.health.flapping import FlapDetector
from robot_platform.health.starvation import LoadGuard

Clock = Callable[[], float]
EventSink = Callable[["HealthCheck", list[FaultEvent]], None]

STATUS_FOR_STATE = {
    FaultState.OK: Status.SUCCESS,
    FaultState.PENDING: Status.RUNNING,
    FaultState.ACTIVE: Status.FAILURE,
    FaultState.CLEARING: Status.FAILURE,
}


@dataclass(frozen=True)
class Observation:
    """What a check saw this tick: whether its condition holds, why, and the numbers behind it."""

    faulty: bool
    message: str
    values: Mapping[str, str] = field(default_factory=dict)
    severity: int | None = None


def fmt_num(x: float | None, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:.3g}{unit}"


class HealthCheck(py_trees.behaviour.Behaviour):
    """Base of every check kind.

    Args:
        name: unique check name (tree node name, metric label).
        spec: fault code, severity, debounce and clear timing.
        clock: the monitor's clock (seconds, monotonic); never the wall clock directly.
        group: the tree branch the check hangs under (``sensors``, ``motion``...).
        sink: receives the transitions of each tick (the monitor collects them).
        startup_grace_s: how long after the first tick "never seen" does not count as a fault (the
            source had no fair chance to start yet); what a source reports once it is up counts at once.
        flap: the check's flap detector (the monitor folds a flapping check into one FLAPPING alert).
        **params: the kind's own parameters, handed to :meth:`configure`.

    Why a ``configure`` hook instead of an ``__init__`` per kind: every kind took the same four
    arguments and passed them on; now a kind only states (keyword-only, typed) what it adds.
    """

    kind = "abstract"

    def __init__(
        self,
        name: str,
        spec: FaultSpec,
        clock: Clock,
        group: str = "",
        sink: EventSink | None = None,
        startup_grace_s: float = 0.0,
        flap: FlapDetector | None = None,
        **params: Any,
    ) -> None:
        super().__init__(name)
        self.startup_grace_s = startup_grace_s
        self.flap = flap
        self.held_why = ""  # why the current fault verdict is held (see held_if_untrusted); "" if not
        self.witnessed_by: tuple[str, ...] = ()  # topics that made the current verdict trusted on a busy host
        self.verdicts_held = 0  # fault verdicts held as untrusted (episodes), for the metrics
        self.verdicts_witnessed = 0  # silences trusted at once on a saturated host (episodes)
        self.spec = spec
        self.fault = FaultStateMachine(spec)
        self.clock = clock
        self.group = group
        self.sink = sink
        self.last: Observation | None = None
        self._started: float | None = None
        self.configure(**params)

    def configure(self, *args: Any, **params: Any) -> None:
        """Store the kind's parameters (subclasses declare them keyword-only); the base takes none."""
        if args or params:
            raise TypeError(f"{type(self).__name__} takes no parameters {sorted(params)}")

    def since_start(self, now: float) -> float:
        """Seconds since the first tick of this check (start-up grace for 'nothing arrived yet')."""
        if self._started is None:
            self._started = now
        return now - self._started

    @property
    def grace_s(self) -> float:
        """The start-up grace in force: none once the fault is raised, nor for an alert taken over after a
        restart (it was raised on the same evidence before; confirming it late would turn a slow start into
        clear-then-raise)."""
        return 0.0 if self.fault.restoring or self.fault.state.faulted else self.startup_grace_s

    def in_startup_grace(self, now: float) -> bool:
        """True while a source that was never seen still gets its fair chance to start."""
        return self.since_start(now) < self.grace_s

    @property
    def latched(self) -> bool:
        """The fault is raised: checks use their clear thresholds instead of the raise thresholds."""
        return self.fault.state.faulted

    @abc.abstractmethod
    def observe(self, now: float) -> Observation:
        """What the check sees now: faulted or not, a message and values (each kind implements it)."""

    def update(self) -> Status:
        now = self.clock()
        self.since_start(now)
        obs = self.observe(now)
        self.last = obs
        events = self.fault.update(now, obs.faulty, severity=obs.severity, message=obs.message, values=obs.values)
        if events and self.sink is not None:
            self.sink(self, events)
        self.feedback_message = f"{self.fault.state.name}: {obs.message}"
        return STATUS_FOR_STATE[self.fault.state]


def held_if_untrusted(
    check: HealthCheck,
    obs: Observation,
    now: float,
    span_s: float,
    evidence_s: float | None = None,
    witnesses: Callable[[float, float], list[str]] | None = None,
) -> Observation:
    """Hold back a *new* fault verdict over ``span_s`` s while the monitor was starved or the host saturated
    (:meth:`LoadGuard.judge`; ``evidence_s``: how long a silence lasted, ``witnesses``: the topics that can
    prove it real). Raised faults and recoveries are never held. A held verdict that ends in a recovery was
    the load's doing: the guard is told (HOST_OVERLOADED says so). Counted per episode (metrics):
    ``verdicts_held`` when a verdict starts being held, ``verdicts_witnessed`` when a silence on a saturated
    host is trusted at once because its witnesses kept arriving."""
    guard: LoadGuard | None = getattr(check, "guard", None)
    if guard is None:
        return obs
    if not obs.faulty or check.latched:
        if check.held_why and not obs.faulty:
            guard.note_held(now, f"{check.held_why}: {check.name} would have raised")
        check.held_why, check.witnessed_by = "", ()
        return obs
    trust = guard.judge(now, span_s, evidence_s, witnesses)
    if trust.why and not check.held_why:
        check.verdicts_held += 1
    if trust.witnesses and not check.witnessed_by:
        check.verdicts_witnessed += 1
    check.held_why, check.witnessed_by = trust.why, trust.witnesses
    if trust.witnesses:
        shown = ", ".join(trust.witnesses)
        return Observation(
            obs.faulty, f"{obs.message} (host saturated; {shown} kept arriving)", {**obs.values, "witnesses": shown}
        )
    if not trust.why:
        return obs
    return Observation(False, f"{obs.message}; not trusted: {trust.why}", {**obs.values, "held": trust.why})
