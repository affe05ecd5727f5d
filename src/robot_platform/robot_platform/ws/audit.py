"""Audit of ws_agent: every command and every refusal, as a throttled log line and a NATS event."""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgpack

AUDIT_SUBJECT_ROOT = "audit"
AUDIT_LOG_INTERVAL_S = 1.0
AUDIT_LOG_KEYS = 4096

PublishFn = Callable[[str, bytes, dict[str, str]], None]


class Auditor:
    """Every command and every refusal: a log line (throttled per user+op+target) and a NATS event.

    Event: subject ``audit.<robot>``, msgpack body {ts_ns, agent, session, user, role, client, op,
    target, subject, type, allowed, reason}; never a secret, token or message payload.
    """

    def __init__(self, agent: str, publish: PublishFn, log: logging.Logger | Any,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.agent = agent
        self._publish = publish
        self._log = log
        self._clock = clock
        self._last: OrderedDict[tuple[str, str, str, bool], tuple[float, int]] = OrderedDict()
        self.events = 0

    def record(self, *, robot: str, session: str, user: str, role: str, client: str, op: str, target: str,
               subject: str = "", type_name: str = "", allowed: bool = True, reason: str = "") -> None:  # fmt: skip
        self.events += 1
        event = {
            "ts_ns": time.time_ns(), "agent": self.agent, "session": session, "user": user, "role": role,
            "client": client, "op": op, "target": target, "subject": subject, "type": type_name,
            "allowed": allowed, "reason": reason,
        }  # fmt: skip
        headers = {"Content-Type": "application/msgpack", "Rp-Kind": "audit", "Nats-Msg-Id": uuid.uuid4().hex}
        self._publish(f"{AUDIT_SUBJECT_ROOT}.{robot or self.agent}", msgpack.packb(event), headers)
        key = (user, op, target, allowed)
        now = self._clock()
        last, suppressed = self._last.pop(key, (-1e18, 0))
        if now - last >= AUDIT_LOG_INTERVAL_S:
            more = f" (+{suppressed} similar)" if suppressed else ""
            verdict = "allowed" if allowed else f"REFUSED ({reason})"
            self._log.info(f"audit: {user} ({role}) {op} {target} from {client}: {verdict}{more}")
            self._last[key] = (now, 0)
        else:
            self._last[key] = (last, suppressed + 1)
        while len(self._last) > AUDIT_LOG_KEYS:
            self._last.popitem(last=False)
