"""What a jobs transaction has to say, held until it commits: device messages and console events.

Messages are published only after the store transaction that caused them committed, so a device is
never told about an execution a crash could take back; a transaction rolled back discards them. Also
remembers, per thing, the execution last announced on notify-next, so a device hears notify-next only
when its next execution changed. Not thread-safe: used under the service's lock.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from robot_platform.jobs.model import Execution, Job
from robot_platform.jobs.store import JobStore
from robot_platform.mqtt import jobs_protocol as p
from robot_platform.mqtt.jobs_protocol import ExecStatus

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
EventSink = Callable[[dict[str, Any]], None]


class JobsOutbox:
    """Device messages and console events of the transaction in progress; see the module docstring."""

    def __init__(
        self,
        store: JobStore,
        publish: Publish,
        on_event: EventSink,
        clock: Callable[[], float],
        counters: collections.Counter[str],
    ) -> None:
        self.store = store
        self.publish = publish
        self.on_event = on_event
        self.clock = clock
        self.counters = counters
        self._messages: list[tuple[str, bytes]] = []
        self._events: list[dict[str, Any]] = []
        self._last_next: dict[str, str] = {}  # thing -> job id last announced on notify-next

    def add(self, topic: str, payload: bytes, first: bool = False) -> None:
        """A device message; ``first`` puts it before the others (a reply goes out before its notifies)."""
        if first:
            self._messages.insert(0, (topic, payload))
        else:
            self._messages.append((topic, payload))

    def notify(self, thing: str) -> None:
        """notify-next when the thing's next pending execution changed; notify with the pending lists."""
        pending = self.store.pending(thing)
        head = pending[0] if pending else None
        head_id = f"{head.job_id}#{head.execution_number}" if head else ""  # a retry is a new next execution
        now = int(self.clock())
        self._messages.append(
            (
                p.topic(thing, "notify"),
                p.encode(
                    {
                        "timestamp": now,
                        "jobs": {
                            status.value: [ex.summary() for ex in pending if ex.status == status]
                            for status in (ExecStatus.QUEUED, ExecStatus.IN_PROGRESS)
                            if any(ex.status == status for ex in pending)
                        },
                    }
                ),
            )
        )
        if self._last_next.get(thing) == head_id and head_id:
            return
        self._last_next[thing] = head_id
        body: dict[str, Any] = {"timestamp": now}
        if head is not None:
            job = self.store.job(head.job_id)
            body["execution"] = head.data(job.spec.document if job else {})
        self._messages.append((p.topic(thing, "notify-next"), p.encode(body)))

    def forget_announced(self) -> None:
        """Announce every thing's next execution again on its next notify (after a restart or reconnect)."""
        self._last_next.clear()

    def event_execution(self, ex: Execution) -> None:
        self._events.append({"type": "execution", **ex.to_dict()})

    def event_job(self, job: Job, what: str) -> None:
        item = job.to_dict()
        item.pop("document")
        self._events.append({"type": "job", "event": what, **item})

    def discard(self) -> None:
        """The transaction was rolled back: nothing it produced may go out."""
        self._messages.clear()
        self._events.clear()

    def flush(self) -> None:
        """Send what the last (committed) transaction produced."""
        messages, self._messages = self._messages, []
        events, self._events = self._events, []
        for name, payload in messages:
            try:
                self.publish(name, payload)
            except Exception:  # a broken transport must not undo committed state; logged with traceback
                self.counters["publish_errors"] += 1
                log.exception("publish to %s failed", name)
        for event in events:
            try:
                self.on_event(event)
            except Exception:  # same: events are best effort, the store has the truth
                log.exception("event sink failed")
