"""Reads the bridge's outbound ROS subscriptions in a thread of its own, over one long-lived wait set.

Why: rclpy's executor (Jazzy) spends 60-160 µs of Python per wake-up rebuilding its wait set, walking
every entity of the node and wrapping each callback in a Task (measured: half of the bridge's CPU at
1 kHz, and the reason a plain Python subscriber tops out near 6,000 small messages/s). This reader
waits on a wait set holding only the outbound subscriptions and a guard condition, and on each wake-up
takes every queued message of each ready topic (:func:`.ros_batch.take_queued`, up to a batch), then
wakes the NATS thread once (``batch``). The EventsExecutor, the other way out, broke SIGTERM handling.

The subscriptions are still created by the node (graph, names, QoS, as usual) but in a
:class:`ReaderGroup`, a callback group that no executor ever runs, so only this reader takes their
messages; timers, services, discovery and parameters stay on the node's executor. The reader also
releases rate-limited messages when due (``flush_due``), so every piece of outbound per-topic state of
:class:`~.core.BridgeCore` (limiters, counters) is touched by this one thread.

Lifecycle: ``add()`` (any time, any thread) → ``start()`` → ``stop()`` before the node is destroyed.
An unexpected error in the thread is logged with its traceback and shuts the ROS context down, so the
node stops (as an exception in an executor callback would) instead of silently bridging nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

from robot_platform.bridge.ros_batch import TAKE_BATCH_MAX, take_queued

IDLE_WAIT_S = 0.5  # longest wait without a message or due release: bounds how late stop() is noticed
STOP_JOIN_TIMEOUT_S = 5.0

HandleFn = Callable[[Any], Any]
FlushFn = Callable[[float], "float | None"]  # (monotonic now) -> next due time or None


class ReaderGroup(CallbackGroup):
    """Callback group of subscriptions read by :class:`OutReader`: executors never run its entities."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        return None


class OutReader:
    """One thread taking messages from the added subscriptions and handing each to its handler.

    ``min_period_s`` > 0: at most one round of takes per that many seconds, for readers whose messages
    wait without harm (robot_agent's capture buffer): messages arriving meanwhile queue in the
    subscriptions' history (whose depth must hold a period's worth) and go in one batch, instead of one
    wake-up of this thread per message. 0 (the bridge's default; its ``out.read_period_s``): every message
    is taken as soon as it arrives."""

    def __init__(
        self,
        context: Context,
        flush_due: FlushFn,
        batch: Callable[[], AbstractContextManager[Any]],
        log: Any,
        take_max: int = TAKE_BATCH_MAX,
        name: str = "nats_bridge-ros-out",
        min_period_s: float = 0.0,
    ) -> None:
        self.group = ReaderGroup()
        self.name = name  # its thread's (per-thread CPU and py-spy profiles tell the readers apart by it)
        self._min_period_s = min_period_s
        self._context = context
        self._flush_due = flush_due
        self._batch = batch
        self._log = log
        self._take_max = take_max
        self._lock = threading.Lock()
        self._entries: list[tuple[Any, HandleFn, bool]] = []
        self._changed = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wake = GuardCondition(None, None, context=context)

    def add(self, subscription: Any, handle: HandleFn, with_info: bool = False) -> None:
        """Read ``subscription`` (created with ``callback_group=self.group``) from now on; ``with_info``:
        ``handle(msg, info)`` with rmw's message info (reception time: see ``min_period_s``)."""
        with self._lock:
            self._entries.append((subscription, handle, with_info))
            self._changed = True
        self._wake.trigger()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_JOIN_TIMEOUT_S) -> None:
        """Wake the thread, let it finish the current burst, join it (bounded)."""
        self._stopping = True
        with contextlib.suppress(InvalidHandle):
            self._wake.trigger()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._log.warning(f"ROS reader thread did not stop within {timeout:.1f}s")
                return
        self._wake.destroy()

    # ------------------------------------------------------------------ reader thread
    def _main(self) -> None:
        try:
            self._loop()
        except Exception:  # not swallowed: logged, then the node is stopped
            if self._stopping or not self._context.ok():
                return  # the context went away under the wait set during shutdown: nothing to report
            self._log.error(f"ROS reader thread failed, stopping the node:\n{traceback.format_exc()}")
            self._context.try_shutdown()

    def _loop(self) -> None:
        held = ExitStack()  # keeps the handles in use (not destroyed under the wait set)
        entries: list[tuple[Any, HandleFn, bool]] = []
        wait_set: Any = None
        due: float | None = None  # when the next rate-limited message is to be released
        try:
            while not self._stopping and self._context.ok():
                if self._changed:
                    held.close()
                    with self._lock:
                        entries = list(self._entries)
                        self._changed = False
                    for sub, *_ in entries:
                        held.enter_context(sub.handle)
                    held.enter_context(self._wake.handle)
                    with self._context.handle:
                        wait_set = _rclpy.WaitSet(len(entries), 1, 0, 0, 0, 0, self._context.handle)
                now = time.monotonic()
                timeout = IDLE_WAIT_S if due is None else min(max(due - now, 0.0), IDLE_WAIT_S)
                wait_set.clear_entities()
                for sub, *_ in entries:
                    wait_set.add_subscription(sub.handle)
                wait_set.add_guard_condition(self._wake.handle)
                wait_set.wait(int(timeout * 1e9))
                ready = wait_set.get_ready_entities("subscription")
                # What was taken and what the rate limits release now go in one batch: one wake-up of
                # the NATS thread per round, not one for the takes and one for the releases.
                with self._batch():
                    for sub, handle, with_info in entries:
                        if sub.handle.pointer in ready:
                            take_queued(sub, handle, self._take_max, with_info)
                    due = self._flush_due(time.monotonic())
                if ready and self._min_period_s > 0 and not self._stopping:
                    time.sleep(self._min_period_s)  # what arrives meanwhile is taken in one round
        finally:
            held.close()
