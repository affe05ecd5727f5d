"""When each simulated sensor publishes: one thread, not one rclpy timer per sensor.

Why: profiled (py-spy, 2-vCPU VM), the simulator at its default rates (odom 20 Hz, imu 50 Hz, scan
10 Hz, battery 1 Hz) spent about 80 % of its CPU in rclpy's executor, which rebuilds its wait set from
every timer, subscription and service of the node on each of the ~80 wake-ups a second, and about
10 % building and publishing the messages. The simulator is not what the platform measures (it stands
for the robot's own drivers), yet ``robot-platform demo --robots 6`` runs six of them on the same two
cores. A plain thread that sleeps until the next sensor is due and publishes (rclpy publishers may be
used from any thread) costs the publishing only; the executor keeps cmd_vel, the services and the
parameters.

:class:`SensorSchedule` is the pure part (tested alone): the due times, and what happens when the
thread falls behind (a sensor late by more than one period is rescheduled from now, so a stalled
process resumes at the set rate instead of publishing a burst of stale messages).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

Clock = Callable[[], float]


class SensorSchedule:
    """Due times of sensors publishing at fixed periods (seconds, on a monotonic clock)."""

    def __init__(self, periods: Mapping[str, float], now: float) -> None:
        if not periods or any(p <= 0.0 for p in periods.values()):
            raise ValueError(f"sensor periods must be > 0: {dict(periods)}")
        self.periods = dict(periods)
        self.due = {sensor: now + period for sensor, period in self.periods.items()}

    def next_due(self) -> float:
        return min(self.due.values())

    def take_due(self, now: float) -> list[str]:
        """The sensors due at ``now`` (in the order they were given), each rescheduled one period on, or
        from ``now`` when it is more than a period late."""
        ready = [sensor for sensor, due in self.due.items() if due <= now]
        for sensor in ready:
            period = self.periods[sensor]
            nxt = self.due[sensor] + period
            self.due[sensor] = nxt if nxt > now else now + period
        return ready


class SensorClock:
    """Calls ``publish(sensor)`` for each sensor when it is due, on a thread of its own, until
    :meth:`stop`. ``publish`` errors end nothing but that call: ``on_error(sensor, exc)`` is told."""

    def __init__(
        self,
        periods: Mapping[str, float],
        publish: Callable[[str], None],
        on_error: Callable[[str, Exception], None],
        clock: Clock = time.monotonic,
    ) -> None:
        self._schedule = SensorSchedule(periods, clock())
        self._publish = publish
        self._on_error = on_error
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensor-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self._schedule.next_due() - self._clock())):
            for sensor in self._schedule.take_due(self._clock()):
                try:
                    self._publish(sensor)
                except Exception as exc:  # not swallowed: reported, and the other sensors go on
                    self._on_error(sensor, exc)
