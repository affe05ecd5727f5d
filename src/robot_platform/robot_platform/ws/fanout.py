"""Fan-out of NATS messages to client sessions, and NATS interest bookkeeping.

The subject index is copy-on-write: changes (subscribe/unsubscribe, from client threads) build a new
dict under a lock and swap it in; :meth:`Hub.deliver` (NATS thread) reads the current dict without a
lock and never iterates over something another thread mutates. ``on_interest(subject, True)`` is
called when the first client subscribes to a subject and ``(subject, False)`` after the last one left,
so the agent holds NATS subscriptions only for what some browser shows (no camera frames pulled over
a leaf link that nobody watches). The subject subscribed for a telemetry topic with an overview copy is
chosen by :class:`.overview.OverviewPolicy` from its clients' throttles (re-chosen on every subscribe,
option change and unsubscribe): ``robots.<id>.overview.<topic>`` while all of them are slow enough,
else the full rate; its messages reach the topic's clients as they are (:meth:`Hub.deliver`). A copy
that stays silent puts the topic on the full rate for a while (:class:`.overview.OverviewWatch`, checked
at most once a second from the NATS thread as messages arrive).

Camera frames (``robots.<id>.frames.<camera>``) are not envelopes: their body is a JPEG and their
headers those of :mod:`robot_platform.frames.meta`; they become :class:`.frame_relay.FrameOutgoing`
(one binary ``frame`` message). A frame with bad headers is counted as ``bad_frame``.

Log records (``robots.<id>.logs.<level>``) are decoded (:func:`robot_platform.ops.logs.decode_entry`)
and forwarded as the console's entry dict ``{robot, stamp, level, node, msg, file, function, line}``;
a malformed one is counted as ``bad_log_record``. The fleet's event subjects (``jobs.events``,
``fleet.registry.events``) carry plain msgpack maps and are forwarded as they are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from robot_platform.frames.meta import FrameMeta
from robot_platform.messaging.codec import check_payload_size
from robot_platform.messaging.envelope import Envelope
from robot_platform.messaging.errors import BridgeError
from robot_platform.ops.errors import LogRecordError
from robot_platform.ops.logs import LOG_TYPE, decode_entry
from robot_platform.ws.client_session import ClientSession, Subscription
from robot_platform.ws.frame_relay import FrameOutgoing
from robot_platform.ws.outgoing import Outgoing
from robot_platform.ws.overview import OverviewPolicy, OverviewWatch
from robot_platform.ws.topics import payload_kind

H_PLAIN_TYPE = "rp-type"  # type header of the jobs and registry events (no platform envelope)
InterestFn = Callable[[str, bool], None]
CHECK_PERIOD_S = 1.0  # how often silent overview copies are looked for
LogFn = Callable[[str], None]


@dataclass
class HubCounters:
    received: int = 0
    offered: int = 0
    no_interest: int = 0
    source_switches: int = 0  # full rate <-> overview copy (see overview.py)
    errors: dict[str, int] = field(default_factory=dict)


class Hub:
    """Routes each NATS message to the subscriptions of every session that wants its subject."""

    def __init__(
        self,
        on_interest: InterestFn,
        max_payload_bytes: int,
        log: LogFn | None = None,
        overview: OverviewPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_interest = on_interest
        self.max_payload_bytes = max_payload_bytes
        self._log = log or (lambda _m: None)
        self.overview = overview or OverviewPolicy()
        # silent for 4 periods (at least 3 s): full rate for 30 s, then the copy again
        self.watch = OverviewWatch(max(3.0, 4 * self.overview.period_s), 30.0)
        self._clock = clock
        self._next_check = 0.0
        self._lock = threading.Lock()
        # Serialises the choice of a subject's source and its on_interest calls (never held by deliver).
        self._interest_lock = threading.RLock()
        self._index: dict[str, tuple[tuple[ClientSession, Subscription], ...]] = {}
        self._source: dict[str, str] = {}  # client subject -> the NATS subject subscribed for it
        self._key_of: dict[str, str] = {}  # NATS subject subscribed -> client subject (copy-on-write)
        self.sessions: dict[str, ClientSession] = {}
        self.counters = HubCounters()
        self._dropped_closed = 0  # drops of sessions that already left, so totals never go down

    # ------------------------------------------------------------------ client threads
    def add_session(self, session: ClientSession) -> None:
        with self._lock:
            self.sessions[session.session_id] = session

    def remove_session(self, session: ClientSession) -> None:
        """Drop every subscription of ``session`` (on disconnect)."""
        with self._lock:
            self.sessions.pop(session.session_id, None)
        subs = session.subscriptions()
        for sub in subs:
            self.unlink(session, sub)
        self._dropped_closed += sum(s.dropped_queue + s.dropped_bytes for s in subs)
        session.close()

    def link(self, session: ClientSession, sub: Subscription) -> None:
        """Start routing ``sub.subject`` to ``session``."""
        with self._interest_lock:
            with self._lock:
                entries = self._index.get(sub.subject, ())
                if any(s is session and x is sub for s, x in entries):
                    return
                index = dict(self._index)
                index[sub.subject] = (*entries, (session, sub))
                self._index = index
            self._select(sub.subject)

    def retune(self, sub: Subscription) -> None:
        """A client changed the options (throttle) of ``sub``: re-choose the subject feeding it."""
        with self._interest_lock:
            self._select(sub.subject)

    def unlink(self, session: ClientSession, sub: Subscription) -> None:
        with self._interest_lock:
            with self._lock:
                entries = self._index.get(sub.subject, ())
                kept = tuple((s, x) for s, x in entries if not (s is session and x is sub))
                if len(kept) == len(entries):
                    return
                index = dict(self._index)
                if kept:
                    index[sub.subject] = kept
                else:
                    del index[sub.subject]
                self._index = index
            self._select(sub.subject)

    def _select(self, subject: str) -> None:
        """Subscribe what ``subject``'s clients need now (nothing, the full rate or the overview copy):
        the new source first, then the old one is dropped, so a switch loses no message."""
        entries = self._index.get(subject, ())
        wanted = self.overview.source(subject, (x.throttle_s for _, x in entries)) if entries else None
        now = self._clock()
        if wanted is not None and wanted != subject and not self.watch.allowed(subject, now):
            wanted = subject  # its copy was silent: full rate for now
        current = self._source.get(subject)
        if wanted == current:
            return
        if wanted is not None and wanted != subject:
            self.watch.started(subject, now)
        else:
            self.watch.stopped(subject)
        if wanted is not None:
            self._source[subject] = wanted
            self._key_of = {**self._key_of, wanted: subject}
            self._on_interest(wanted, True)
        else:
            del self._source[subject]
        if current is not None:
            self._key_of = {k: v for k, v in self._key_of.items() if k != current}
            self._on_interest(current, False)
            if wanted is not None:
                self.counters.source_switches += 1

    def _check_overviews(self) -> None:
        """Re-choose the sources of silent overview copies and of ended fallbacks (NATS thread; skipped
        if a client thread is changing subscriptions right now: the next message checks again)."""
        if not self._interest_lock.acquire(blocking=False):
            return
        try:
            now = self._clock()
            self._next_check = now + CHECK_PERIOD_S
            before = self.watch.fallbacks
            for subject in self.watch.due(now):
                self._select(subject)
            n = self.watch.fallbacks
            if n > before and (n <= 10 or n & (n - 1) == 0):
                self._log(
                    f"{n} overview copies silent for {self.watch.grace_s:g}s so far: those topics get the "
                    f"full rate for {self.watch.retry_s:g}s (robots without out.<n>.overview_rate_hz?)"
                )
        finally:
            self._interest_lock.release()

    def source_of(self, subject: str) -> str | None:
        """The NATS subject subscribed for client subject ``subject`` (None: no client)."""
        return self._source.get(subject)

    def subjects(self) -> list[str]:
        return list(self._index)

    # ------------------------------------------------------------------ NATS thread
    def deliver(self, subject: str, headers: dict[str, str] | None, data: bytes, pattern: str = "") -> int:
        """Offer one NATS message to the clients of the subscription it came through (``pattern``, the
        subscribed subject, possibly a wildcard; default: ``subject``); returns how many got it."""
        self.counters.received += 1
        key = pattern or subject
        target = self._key_of.get(key, key)
        now = self._clock()
        if target != key:  # through an overview copy: it is alive
            self.watch.heard(target, now)
        if now >= self._next_check:
            self._check_overviews()
        entries = self._index.get(target)
        if not entries:
            self.counters.no_interest += 1
            return 0
        try:
            check_payload_size(subject, data, self.max_payload_bytes)
            kind = payload_kind(subject)
            if kind == "frame":
                out: Outgoing = self._frame(subject, headers, data)
            elif kind == "log":
                entry = decode_entry(subject, headers, data)
                out = Outgoing(subject, LOG_TYPE, msgpack.packb(entry.to_dict()), entry.robot_id)
            elif kind == "plain":
                out = Outgoing(subject, str((headers or {}).get(H_PLAIN_TYPE, ""))[:200], data)
            else:
                env = Envelope.from_headers(subject, headers)
                out = Outgoing(subject, env.type_name, data, subject.split(".")[1] if "." in subject else "")
        except BridgeError as exc:
            self._count(exc.kind, f"{subject}: not forwarded: {exc}")
            return 0
        except LogRecordError as exc:
            self._count(exc.kind, f"{subject}: not forwarded: {exc}")
            return 0
        except ValueError as exc:  # FrameMeta: a header of the frame is missing or not a number
            self._count("bad_frame", f"{subject}: frame not forwarded: {exc}")
            return 0
        for session, sub in entries:
            session.offer(sub, out)
        self.counters.offered += len(entries)
        return len(entries)

    @staticmethod
    def _frame(subject: str, headers: dict[str, str] | None, data: bytes) -> FrameOutgoing:
        return FrameOutgoing(subject, data, FrameMeta.from_headers(headers))

    def _count(self, kind: str, line: str) -> None:
        n = self.counters.errors.get(kind, 0) + 1
        self.counters.errors[kind] = n
        if n <= 10 or n & (n - 1) == 0:  # first ten, then powers of two: no log flood
            self._log(f"{line} ({n} so far)")

    def snapshot(self) -> dict[str, Any]:
        sessions = list(self.sessions.values())
        dropped = sum(
            t["dropped_queue"] + t["dropped_bytes"] for s in sessions for t in s.counters()["topics"].values()
        )
        return {
            "clients": len(sessions),
            "subjects": len(self._index),
            "received": self.counters.received,
            "offered": self.counters.offered,
            "no_interest": self.counters.no_interest,
            "overview_subjects": sum(1 for k, v in list(self._source.items()) if k != v),
            "source_switches": self.counters.source_switches,
            "overview_fallbacks": self.watch.fallbacks,
            "errors": dict(self.counters.errors),
            "dropped": dropped + self._dropped_closed,
        }
