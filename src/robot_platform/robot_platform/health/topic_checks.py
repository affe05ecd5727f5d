"""Topic check kinds: a topic gone silent, a topic arriving too slowly.

Both read a :class:`~.sources.TopicFeed` and, when a :class:`~.starvation.LoadGuard` is given, hold back a
new fault verdict formed while the monitor was starved (:func:`~.checks.held_if_untrusted`).
"""

from __future__ import annotations

from robot_platform.health.checks import HealthCheck, Observation, fmt_num, held_if_untrusted
from robot_platform.health.sources import DataHub, TopicFeed
from robot_platform.health.starvation import LoadGuard


class TopicSilenceCheck(HealthCheck):
    """Fault when no message arrived on ``feed`` for longer than ``timeout_s``.

    A topic never received counts as silent only after ``max(timeout_s, startup_grace_s)`` from the
    first tick (its driver had a fair chance to start); from then on it raises once and stays raised.
    A silence seen while the monitor was starved or the host saturated (``guard``) is not trusted: the
    check holds its state until a verdict over a trustworthy span is possible (HOST_OVERLOADED says why),
    except a silence on a saturated host that other topics of the same node (``hub``: the ROS graph's
    publishers) witness as real: trusted at once (see :mod:`~.starvation`).
    """

    kind = "topic_silence"

    def configure(
        self, *, feed: TopicFeed, timeout_s: float, guard: LoadGuard | None = None, hub: DataHub | None = None
    ) -> None:
        self.feed = feed
        self.timeout_s = timeout_s
        self.guard = guard
        self.hub = hub

    def _witnesses(self, since: float, now: float) -> list[str]:
        if self.hub is None or self.guard is None:
            return []
        return self.hub.witnesses(self.feed.topic, since, now, self.guard.witness_gap_s)

    def observe(self, now: float) -> Observation:
        age = self.feed.age(now)
        values = {"topic": self.feed.topic, "age_s": fmt_num(age), "timeout_s": f"{self.timeout_s:g}"}
        if age is None:
            waited = self.since_start(now)
            limit = max(self.timeout_s, self.grace_s)
            faulty = waited > limit
            what = f"never received in {waited:.1f}s (start-up grace {limit:g}s)"
        else:
            faulty = age > self.timeout_s
            what = f"last message {age:.2f}s ago"
        message = f"{self.feed.topic}: {what} (timeout {self.timeout_s:g}s)"
        silent_for = age if age is not None else self.since_start(now)
        obs = Observation(faulty, message, values)
        return held_if_untrusted(self, obs, now, self.timeout_s, silent_for, self._witnesses)


class TopicRateCheck(HealthCheck):
    """Fault when ``feed`` arrives slower than ``min_rate_hz`` over ``window_s``; clears at ``clear_rate_hz``.

    Judged once the window is full: ``window_s`` after the first message (or the start-up grace if none
    came). A topic silent beyond ``silence_timeout_s`` (a silence check on it, set by the tree builder)
    is that check's alert, not a second one here."""

    kind = "topic_rate"

    def configure(
        self,
        *,
        feed: TopicFeed,
        min_rate_hz: float,
        window_s: float = 2.0,
        clear_rate_hz: float | None = None,
        guard: LoadGuard | None = None,
        silence_timeout_s: float | None = None,
    ) -> None:
        self.feed = feed
        self.min_rate_hz = min_rate_hz
        self.window_s = window_s
        self.clear_rate_hz = min_rate_hz if clear_rate_hz is None else max(clear_rate_hz, min_rate_hz)
        self.guard = guard
        self.silence_timeout_s = silence_timeout_s
        self._silent_seen: float | None = None  # last tick the topic was silent (see observe)

    def observe(self, now: float) -> Observation:
        rate = self.feed.rate(now, self.window_s)
        values = {"topic": self.feed.topic, "rate_hz": f"{rate:.3g}", "min_rate_hz": f"{self.min_rate_hz:g}"}
        first, age = self.feed.first_arrival(), self.feed.age(now)
        waited = self.since_start(now)
        if first is None and waited < max(self.window_s, self.grace_s):
            return Observation(False, f"{self.feed.topic}: waiting for the first message", values)
        if first is not None and now - first < self.window_s:
            return Observation(False, f"{self.feed.topic}: measuring rate", values)
        if self.silence_timeout_s is not None and (age is None or age > self.silence_timeout_s):
            self._silent_seen = now
        if self._silent_seen is not None and now - self._silent_seen < self.window_s:
            # Silent, or back from a silence with a window not yet refilled: the silence check's story.
            return Observation(self.latched, f"{self.feed.topic}: silent (reported by its silence check)", values)
        limit = self.clear_rate_hz if self.latched else self.min_rate_hz
        obs = Observation(rate < limit, f"{self.feed.topic}: {rate:.3g} Hz (minimum {self.min_rate_hz:g} Hz)", values)
        return held_if_untrusted(self, obs, now, self.window_s)
