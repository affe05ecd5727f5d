"""One limit on failed logins for every login path of ws_agent (upgrade token, ``op: auth``, /whoami).

Why one object: a limit on only one path is no limit (the hardening issue measured 40 guesses/s over
``{"op": "auth"}`` on fresh connections while the upgrade token was limited). Every path asks
:meth:`LoginLimiter.retry_after` *before* it hashes anything, reports :meth:`failed` or
:meth:`succeeded` after.

Two kinds of strike, each with exponential backoff (``base_backoff_s``, doubling per failure past the
nominal limit, capped at ``max_backoff_s``):

- per address: ``addr_limit`` failures (any user names) block that address;
- per user: once a user has ``user_limit`` failures from anywhere, every address that has failed for
  that user is blocked *for that user* (one more guess per address, with backoff), while an address
  with no failure for that user still logs in: the right user from another address is not locked out.
  Before that point an address may fail ``user_limit`` times for a user before its backoff starts.

A success clears the (user, address) strikes only: knowing one valid login must not reset the address's
budget for guessing others. Strikes are forgotten ``window_s`` after their last failure once no longer
blocked. Memory is bounded: each table keeps at most ``capacity`` keys, oldest evicted first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_ADDR_LIMIT = 10
DEFAULT_USER_LIMIT = 5
DEFAULT_WINDOW_S = 60.0
DEFAULT_BASE_BACKOFF_S = 5.0
DEFAULT_MAX_BACKOFF_S = 300.0
DEFAULT_CAPACITY = 4096
MAX_USER_KEY_CHARS = 64


@dataclass
class _Strikes:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class _StrikeTable:
    """Failures per key with backoff; bounded, oldest key evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[object, _Strikes] = OrderedDict()

    def get(self, key: object, now: float, window_s: float) -> _Strikes | None:
        row = self._rows.get(key)
        if row is not None and now >= row.blocked_until and now - row.last >= window_s:
            del self._rows[key]  # forgotten: no failure for a window and not blocked
            return None
        return row

    def fail(self, key: object, now: float, window_s: float, limit: int, nominal: int,
             backoff: Callable[[int], float]) -> _Strikes:  # fmt: skip
        """Count a failure; at ``limit`` failures block for ``backoff(failures past nominal)``."""
        row = self.get(key, now, window_s) or _Strikes()
        self._rows.pop(key, None)
        row.count += 1
        row.last = now
        if row.count >= limit:
            row.blocked_until = max(row.blocked_until, now + backoff(max(0, row.count - nominal)))
        self._rows[key] = row
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
        return row

    def clear(self, key: object) -> None:
        self._rows.pop(key, None)

    def __len__(self) -> int:
        return len(self._rows)


class LoginLimiter:
    """See the module docstring. Thread-safe; every call is O(1)."""

    def __init__(
        self,
        addr_limit: int = DEFAULT_ADDR_LIMIT,
        user_limit: int = DEFAULT_USER_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        base_backoff_s: float = DEFAULT_BASE_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if addr_limit < 1 or user_limit < 1:
            raise ValueError("login limits must be >= 1")
        self.addr_limit, self.user_limit, self.window_s = addr_limit, user_limit, window_s
        self.base_backoff_s, self.max_backoff_s = base_backoff_s, max_backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._addr = _StrikeTable(capacity)
        self._user = _StrikeTable(capacity)
        self._pair = _StrikeTable(capacity)
        self.refused = 0  # attempts refused without hashing

    def _backoff(self, past_limit: int) -> float:
        return min(self.max_backoff_s, self.base_backoff_s * 2.0 ** min(past_limit, 30))

    def retry_after(self, addr: str, user: str = "") -> float:
        """Seconds before ``addr`` may try (``user``, if known, included); 0.0 = go ahead."""
        user = user[:MAX_USER_KEY_CHARS]
        with self._lock:
            now = self._clock()
            wait = 0.0
            row = self._addr.get(addr, now, self.window_s)
            if row is not None:
                wait = max(wait, row.blocked_until - now)
            if user:
                pair = self._pair.get((user, addr), now, self.window_s)
                if pair is not None:
                    wait = max(wait, pair.blocked_until - now)
            if wait > 0:
                self.refused += 1
            return max(wait, 0.0)

    def failed(self, addr: str, user: str = "") -> None:
        user = user[:MAX_USER_KEY_CHARS]
        with self._lock:
            now = self._clock()
            self._addr.fail(addr, now, self.window_s, self.addr_limit, self.addr_limit, self._backoff)
            if not user:
                return
            never = 1 << 30
            total = self._user.fail(user, now, self.window_s, never, never, self._backoff)  # counts, never blocks
            limit = 1 if total.count >= self.user_limit else self.user_limit
            self._pair.fail((user, addr), now, self.window_s, limit, self.user_limit, self._backoff)

    def succeeded(self, addr: str, user: str = "") -> None:
        with self._lock:
            self._pair.clear((user[:MAX_USER_KEY_CHARS], addr))

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"addresses": len(self._addr), "users": len(self._user), "refused": self.refused}
