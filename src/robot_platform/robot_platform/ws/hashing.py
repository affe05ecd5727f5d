"""Secret hashing (scrypt / pbkdf2), and the bounded pool every login check runs on.

Why a pool: one scrypt check (n=2**14, r=8) allocates 16 MB. Run in whichever thread a login arrives
on, a burst of failed logins hashes in dozens of threads at once; glibc gives each thread its own malloc
arena and, once a 16 MB block has been freed, raises its mmap threshold so the next ones stay in those
arenas: the hardening issue saw the fleet agent grow from 59 to ~700 MB RSS. Here at most
``workers`` hashes run at once, at most ``max_pending`` wait (beyond: :class:`~.errors.AuthBusyError`,
the login is refused, nothing queued without bound), and :func:`pin_mmap_threshold` keeps big blocks
mmap-backed so they go back to the system when freed.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import hashlib
import hmac
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from robot_platform.ws.errors import AuthBusyError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 2**26
PBKDF2_MIN_ITERATIONS = 100_000
PBKDF2_ITERATIONS = 600_000
SALT_BYTES = 16
HASH_BYTES = 32
DEFAULT_HASH_WORKERS = 2
DEFAULT_HASH_PENDING = 16
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 1024 * 1024  # blocks this big are mmap-backed and unmapped when freed


def hash_secret(secret: str, method: str = "scrypt") -> str:
    """A storable hash line for ``secret`` (random salt)."""
    salt = secrets.token_bytes(SALT_BYTES)
    if method == "scrypt":
        digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if method == "pbkdf2_sha256":
        iterations = PBKDF2_ITERATIONS
        digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations, HASH_BYTES)
        return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown method {method!r}; use scrypt or pbkdf2_sha256")


def verify_secret(stored: str, secret: str) -> bool:
    """True if ``secret`` matches the stored hash line (constant-time compare)."""
    parts = stored.split("$")
    if parts[0] == "scrypt" and len(parts) == 6:
        n, r, p = (int(x) for x in parts[1:4])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
        digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=SCRYPT_MAXMEM)
    elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
        salt, expected = _unb64(parts[2]), _unb64(parts[3])
        digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, int(parts[1]), len(expected))
    else:
        raise ValueError("unknown hash format")
    return hmac.compare_digest(digest, expected)


def check_hash_line(stored: str) -> None:
    parts = stored.split("$") if isinstance(stored, str) else []
    try:
        if parts and parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            if n < 2**14 or n & (n - 1) or r < 1 or p < 1:
                raise ValueError("scrypt needs n >= 16384 (a power of 2), r >= 1, p >= 1")
            _unb64(parts[4]), _unb64(parts[5])
        elif parts and parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            if int(parts[1]) < PBKDF2_MIN_ITERATIONS:
                raise ValueError(f"pbkdf2 needs >= {PBKDF2_MIN_ITERATIONS} iterations")
            _unb64(parts[2]), _unb64(parts[3])
        else:
            raise ValueError("expected scrypt$n$r$p$salt$hash or pbkdf2_sha256$iterations$salt$hash")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class HashPool:
    """At most ``workers`` secret checks at once and ``max_pending`` waiting; see the module docstring."""

    def __init__(self, workers: int = DEFAULT_HASH_WORKERS, max_pending: int = DEFAULT_HASH_PENDING) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ws_agent-hash")
        self.capacity = workers + max_pending  # checks running or waiting, at most
        self._slots = threading.BoundedSemaphore(self.capacity)
        self.busy_refusals = 0

    def submit(self, stored: str, secret: str) -> Future[bool]:
        """:func:`verify_secret` on the pool; AuthBusyError at once when the pool is full."""
        if not self._slots.acquire(blocking=False):
            self.busy_refusals += 1
            raise AuthBusyError()
        try:
            future = self._executor.submit(verify_secret, stored, secret)
        except RuntimeError:  # shut down
            self._slots.release()
            raise AuthBusyError() from None
        future.add_done_callback(lambda _f: self._slots.release())
        return future

    def verify(self, stored: str, secret: str) -> bool:
        """Blocking form of :meth:`submit` (callers are worker threads, never the event loop)."""
        return self.submit(stored, secret).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """glibc: serve blocks >= ``threshold`` by mmap and give them back when freed (fixes the dynamic
    threshold); True if applied. Called once by the agent's entry points, never at import."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
