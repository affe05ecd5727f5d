"""Which NATS subject feeds a telemetry topic: the robot's full rate, or its decimated overview copy.

Why: a console showing the fleet asks for each robot's odometry every 500 ms (``throttle_rate``), yet the
agent used to receive it at the bridge's 20 Hz and throw 9 in 10 away after the leaf link had carried
them (~200 kbit/s per robot while a console is open, 0.34 ms of agent CPU each). nats_bridge also sends a
keep-latest copy at ``out.<n>.overview_rate_hz`` (2 Hz) on ``robots.<id>.overview.<topic>``; the agent
takes that subject while *every* client of the topic asks for a throttle at least as long as the overview
period, and the full-rate subject as soon as one client (the console's detail view: 100 ms) asks for
more, and back when it leaves or slows down. Clients see no difference: the same topic, the same
message (the copy carries the original's body and headers), at the rate they asked for.

Pure logic; :class:`robot_platform.ws.fanout.Hub` applies it on every subscribe, option change and
unsubscribe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from robot_platform.messaging import subjects

# A client asking for exactly the overview period (500 ms at 2 Hz) is served by it: the overview copy
# leaves the robot on a timer of that period, so allow for a little timer slack on the robot.
SLACK_S = 0.005


@dataclass(frozen=True)
class OverviewPolicy:
    """``topics``: ROS topics the robots publish an overview copy of (``/odom``); ``rate_hz``: its rate."""

    topics: frozenset[str] = frozenset()
    rate_hz: float = 2.0

    @classmethod
    def of(cls, topics: Iterable[str], rate_hz: float) -> OverviewPolicy:
        """Validated policy; SubjectError for a topic that is no ROS name, ValueError for a bad rate."""
        if rate_hz <= 0:
            raise ValueError(f"overview rate must be > 0 Hz, got {rate_hz}")
        return cls(frozenset(subjects.topic_tokens(t) for t in topics if t), rate_hz)

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    def overview_subject(self, subject: str) -> str | None:
        """The overview subject that may feed ``subject`` (``robots.<id|*>.ros.<topic>``), else None."""
        if not self.topics:
            return None
        parts = subject.split(".")
        if len(parts) < 4 or ".".join(parts[3:]) not in self.topics:
            return None
        return subjects.overview_of(subject)

    def source(self, subject: str, throttles_s: Iterable[float]) -> str:
        """The subject to receive for ``subject`` while its clients ask for these throttles (seconds)."""
        overview = self.overview_subject(subject)
        if overview is None:
            return subject
        slowest_needed = min(throttles_s, default=0.0)
        return overview if slowest_needed >= self.period_s - SLACK_S else subject


class OverviewWatch:
    """Falls back to the full rate for a topic whose overview copy stays silent (pure logic, times passed in).

    Why: a robot whose bridge sends no copy (an older release during a rolling upgrade, a route without
    ``overview_rate_hz``) would show nothing in the overview at all. A topic on its overview source that
    heard nothing for ``grace_s`` is served from the full rate for ``retry_s``, then the copy is tried
    again (a robot that was off, or upgraded meanwhile, goes back to 2 Hz).
    """

    def __init__(self, grace_s: float, retry_s: float) -> None:
        self.grace_s, self.retry_s = grace_s, retry_s
        self._since: dict[str, float] = {}  # subject on its overview source -> last sign of life (or start)
        self._until: dict[str, float] = {}  # subject served at full rate until
        self.fallbacks = 0

    def started(self, subject: str, now: float) -> None:
        self._since[subject] = now

    def stopped(self, subject: str) -> None:
        self._since.pop(subject, None)

    def heard(self, subject: str, now: float) -> None:
        if subject in self._since:
            self._since[subject] = now

    def allowed(self, subject: str, now: float) -> bool:
        """May ``subject`` be served from its overview copy now?"""
        return now >= self._until.get(subject, now)

    def due(self, now: float) -> list[str]:
        """Subjects to re-choose now: silent overviews (put on the full rate) and ended fallbacks."""
        ended = [s for s, t in self._until.items() if now >= t]
        for subject in ended:
            del self._until[subject]
        silent = [s for s, t in self._since.items() if now - t >= self.grace_s]
        for subject in silent:
            self._until[subject] = now + self.retry_s
            self.fallbacks += 1
        return silent + ended
