"""Per-client state: subscriptions, bounded outgoing queues, throttling, drop counters.

Threads: the NATS thread *offers* messages (never blocks: it only appends under a short lock), the
client's sender (a coroutine on the agent's event loop, see connections.py) *polls* batches and writes
them (a slow or stalled browser only delays its own sender). Frame handling of the client changes
subscriptions. Nothing here touches a socket, so it is unit-tested without one.

Queues and drop policy (all bounded, every drop counted per topic):
- each subscription keeps at most ``depth`` pending messages (``queue_length`` of the subscribe, or
  the agent's default, capped): when full the OLDEST is dropped, so telemetry is latest-wins;
- ``throttle_rate`` (ms) spaces messages of one topic; what arrives in between waits in the same
  latest-wins queue, so a throttled client gets the newest state at the throttled rate;
- all pending messages of a client together hold at most ``max_queue_bytes``; a message that would
  pass it is dropped (counted as ``dropped_bytes``), unless the queue is empty;
- control messages (status, service responses) have their own queue, drop-oldest.
Topics with pending messages are served round-robin, so one busy topic cannot starve the others.
The messages queued are shared with every other client receiving them (outgoing.py).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from robot_platform.messaging.errors import BridgeError
from robot_platform.ws import protocol
from robot_platform.ws.outgoing import Frame, Outgoing, Pending

MAX_LOGGED_REASON = 200  # characters of a refusal's reason in the log (client-chosen names are in it)


@dataclass(frozen=True)
class SessionLimits:
    # when a subscribe says queue_length 0 (roslibjs's default, rosbridge's "no throttling queue"): deep
    # enough that a normal client never loses a burst, still latest-wins and bounded by max_queue_bytes
    default_queue_length: int = 100
    max_queue_length: int = 100
    max_queue_bytes: int = 8 * 1024 * 1024
    control_capacity: int = 100
    max_subscriptions: int = 256
    batch_max: int = 64  # frames handed to the sender at once


@dataclass
class Subscription:
    """One topic subscribed by one client (several rosbridge subscribe ids may share it)."""

    topic: str
    subject: str
    compression: str = "none"
    throttle_s: float = 0.0
    depth: int = 10
    fragment_size: int = 0
    ids: set[str | None] = field(default_factory=set)
    pending: deque[Outgoing] = field(default_factory=deque)
    next_allowed: float = 0.0
    delivered: int = 0
    dropped_queue: int = 0
    dropped_bytes: int = 0
    errors: int = 0

    def counters(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "dropped_queue": self.dropped_queue,
            "dropped_bytes": self.dropped_bytes,
            "pending": len(self.pending),
            "errors": self.errors,
        }


class ClientSession:
    """State of one WebSocket client. Thread-safe; see the module docstring for who calls what."""

    def __init__(
        self,
        session_id: str,
        user: str = "",
        role: str = "",
        limits: SessionLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session_id = session_id
        self.user = user
        self.role = role
        self.limits = limits or SessionLimits()
        self.status_level = "error"
        self.principal: Any = None  # access.Principal once authenticated (set by the gateway)
        self.client = ""  # remote host:port, for audit lines
        self.address = ""  # remote host, for login limits
        self.auth_failures = 0
        self.inbound_limiter: Any = None  # the gateway's per-client message rate limit
        self.advertised: dict[str, str] = {}  # topic -> type, from advertise
        self._clock = clock
        self._cond = threading.Condition()
        self._subs: dict[str, Subscription] = {}
        self._ready: OrderedDict[str, Subscription] = OrderedDict()
        self._control: deque[Frame] = deque()
        self._bytes = 0
        self._closed = False
        self._waiting = False
        self._wake: Callable[[], None] | None = None  # one-shot: an asyncio sender waiting in poll()
        self._fragment_seq = 0
        self.dropped_control = 0
        self.render_errors = 0
        self.sending_since: float | None = None  # set by the sender while a write is in progress
        self.refusals: dict[str, int] = {}  # refused client messages by kind (a fixed set of kinds)
        self._unlogged: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ subscriptions (receive thread)
    def subscribe(self, req: protocol.Subscribe, subject: str, latest_only: bool = False) -> tuple[Subscription, bool]:
        """Add or update the subscription of ``req.topic``; (subscription, created). ``latest_only``
        (camera frames) keeps one pending message whatever ``queue_length`` says."""
        depth = req.queue_length or self.limits.default_queue_length
        depth = 1 if latest_only else max(1, min(depth, self.limits.max_queue_length))
        with self._cond:
            sub = self._subs.get(req.topic)
            created = sub is None
            if sub is None:
                if len(self._subs) >= self.limits.max_subscriptions:
                    raise OverflowError(f"at most {self.limits.max_subscriptions} subscriptions per client")
                sub = Subscription(topic=req.topic, subject=subject)
                self._subs[req.topic] = sub
            # the latest subscribe of a topic sets its options (documented; rosbridge merges them)
            sub.compression = req.compression
            sub.throttle_s = req.throttle_rate / 1000.0
            sub.depth = depth
            sub.fragment_size = req.fragment_size
            sub.ids.add(req.id)
            while len(sub.pending) > depth:
                self._drop_oldest(sub)
            return sub, created

    def unsubscribe(self, topic: str, request_id: str | None) -> Subscription | None:
        """Remove one subscribe id (all of them if ``request_id`` is None); the subscription if it ended."""
        with self._cond:
            sub = self._subs.get(topic)
            if sub is None:
                return None
            if request_id is None or request_id not in sub.ids:
                sub.ids.clear()
            else:
                sub.ids.discard(request_id)
            if sub.ids:
                return None
            del self._subs[topic]
            self._ready.pop(topic, None)
            while sub.pending:
                self._bytes -= len(sub.pending.popleft().body)
            return sub

    def subscriptions(self) -> list[Subscription]:
        with self._cond:
            return list(self._subs.values())

    # ------------------------------------------------------------------ producers (NATS thread, receive thread)
    def offer(self, sub: Subscription, out: Outgoing) -> None:
        """Queue one message for this client; never blocks, drops (counted) instead."""
        size = len(out.body)
        with self._cond:
            if self._closed or self._subs.get(sub.topic) is not sub:
                return  # unsubscribed meanwhile
            if len(sub.pending) >= sub.depth:
                self._drop_oldest(sub)
            if self._bytes and self._bytes + size > self.limits.max_queue_bytes:
                sub.dropped_bytes += 1
                return
            sub.pending.append(out)
            self._bytes += size
            if sub.topic not in self._ready:
                self._ready[sub.topic] = sub
            if self._waiting:
                self._cond.notify()
            self._fire_wake()

    def send_control(self, frame: Frame) -> None:
        """Queue a status / service_response / other control frame (drop-oldest beyond capacity)."""
        with self._cond:
            if self._closed:
                return
            if len(self._control) >= self.limits.control_capacity:
                self._control.popleft()
                self.dropped_control += 1
            self._control.append(frame)
            if self._waiting:
                self._cond.notify()
            self._fire_wake()

    def _drop_oldest(self, sub: Subscription) -> None:
        self._bytes -= len(sub.pending.popleft().body)
        sub.dropped_queue += 1

    # ------------------------------------------------------------------ consumer (sender thread)
    def take(self, timeout: float) -> list[Frame | Pending] | None:
        """Next batch to send (control first, then topics round-robin, respecting throttles).

        Waits up to ``timeout`` s; returns [] on timeout and None once the session is closed.
        """
        deadline = self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                batch, next_due = self._collect(now)
                if batch:
                    return batch
                wait = deadline - now
                if next_due is not None:
                    wait = min(wait, next_due - now)
                if wait <= 0:
                    if now >= deadline:
                        return []
                    continue
                self._waiting = True
                self._cond.wait(wait)
                self._waiting = False
            return None

    def poll(self, wake: Callable[[], None]) -> tuple[list[Frame | Pending] | None, float | None]:
        """Non-blocking :meth:`take` for an asyncio sender: ``(batch, None)`` when something is due;
        ``([], next_due)`` after arming ``wake`` (called once, from any thread, when a message or close
        arrives; next_due: when a throttled topic may send, or None); ``(None, None)`` once closed."""
        with self._cond:
            if self._closed:
                return None, None
            batch, next_due = self._collect(self._clock())
            if batch:
                return batch, None
            self._wake = wake
            return [], next_due

    def _fire_wake(self) -> None:
        """Under the lock: wake an asyncio sender armed by :meth:`poll` (one-shot)."""
        if self._wake is not None:
            wake, self._wake = self._wake, None
            wake()

    def _collect(self, now: float) -> tuple[list[Frame | Pending], float | None]:
        batch: list[Frame | Pending] = []
        limit = self.limits.batch_max
        while self._control and len(batch) < limit:
            batch.append(self._control.popleft())
        next_due: float | None = None
        progress = True
        while progress and len(batch) < limit and self._ready:
            progress = False
            for topic, sub in list(self._ready.items()):
                if len(batch) >= limit:
                    break
                if sub.next_allowed > now:
                    next_due = sub.next_allowed if next_due is None else min(next_due, sub.next_allowed)
                    continue
                out = sub.pending.popleft()
                self._bytes -= len(out.body)
                sub.delivered += 1
                if sub.throttle_s:
                    sub.next_allowed = now + sub.throttle_s
                if sub.pending:
                    self._ready.move_to_end(topic)
                    progress = progress or not sub.throttle_s
                else:
                    del self._ready[topic]
                batch.append(Pending(topic, sub.compression, sub.fragment_size, out))
        return batch, next_due

    def render(self, batch: list[Frame | Pending]) -> list[Frame]:
        """Frames of a batch (publish encoding and fragmenting happen here, outside the lock)."""
        frames: list[Frame] = []
        for item in batch:
            if not isinstance(item, Pending):
                frames.append(item)
                continue
            try:
                frame = item.out.frame(item.topic, item.compression)
            except BridgeError:
                self._count_render_error(item.topic)
                continue
            if item.fragment_size and isinstance(frame, str) and len(frame) > item.fragment_size:
                self._fragment_seq += 1
                frames.extend(protocol.fragment(frame, item.fragment_size, f"{item.topic}:{self._fragment_seq}"))
            else:
                frames.append(frame)
        return frames

    def render_wire(self, batch: list[Frame | Pending]) -> list[bytes]:
        """Like :meth:`render`, as WebSocket frames; an unfragmented publish reuses the shared frame."""
        wire: list[bytes] = []
        for item in batch:
            if isinstance(item, Pending) and not item.fragment_size:
                try:
                    wire.append(item.out.wire(item.topic, item.compression))
                except BridgeError:
                    self._count_render_error(item.topic)
            else:
                wire.extend(protocol.ws_frame(f) for f in self.render([item]))
        return wire

    def _count_render_error(self, topic: str) -> None:
        self.render_errors += 1
        sub = self._subs.get(topic)
        if sub is not None:
            sub.errors += 1

    # ------------------------------------------------------------------ refusals: counted, logged once per kind
    def note_refusal(self, kind: str, reason: str) -> None:
        """Count one refused client message. The first of each kind waits for the server to log it, so a
        client sending thousands of bad frames costs one log line per kind (and a summary at disconnect)."""
        with self._cond:
            seen = self.refusals.get(kind, 0)
            self.refusals[kind] = seen + 1
            if not seen:
                self._unlogged.append((kind, reason[:MAX_LOGGED_REASON]))

    def take_unlogged(self) -> list[tuple[str, str]]:
        with self._cond:
            out, self._unlogged = self._unlogged, []
        return out

    # ------------------------------------------------------------------ lifecycle and counters
    def close(self) -> None:
        """Stop queuing and wake the sender; subscriptions stay listed (counters, hub unlinking)."""
        with self._cond:
            self._closed = True
            for sub in self._subs.values():
                sub.pending.clear()
            self._ready.clear()
            self._control.clear()
            self._bytes = 0
            self._cond.notify_all()
            self._fire_wake()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def queued_control(self) -> int:
        return len(self._control)

    def counters(self) -> dict[str, Any]:
        with self._cond:
            topics = {t: s.counters() for t, s in self._subs.items()}
        return {
            "user": self.user,
            "role": self.role,
            "queued_bytes": self._bytes,
            "dropped_control": self.dropped_control,
            "render_errors": self.render_errors,
            "refused": dict(self.refusals),
            "topics": topics,
        }
