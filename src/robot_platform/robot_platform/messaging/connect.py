"""How every platform client connects to NATS: credentials, reply inbox, a quiet error callback, backoff.

:class:`~.nats_link.NatsLink` (its own reconnect loop) and the async-native clients that keep nats-py's
reconnect because their subscriptions and KV watchers live on (fleet_registry) both connect through
:func:`connect`, so each gets the user's or robot's inbox prefix (:func:`.inbox.connect_options`) and an
``error_cb``: nats-py's default one logs a traceback for every refused (re)connect, which filled node logs
whenever a server restarted or started late (test/test_nats_errors_quiet_system.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors

from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.inbox import connect_options

CONNECT_TIMEOUT_S = 2.0
RECONNECT_WAIT_S = 1.0  # nats-py's own reconnect (clients that keep it), between attempts
CLIENT_PENDING_BYTES = 8 * 1024 * 1024  # what nats-py buffers for sending before refusing publishes

ErrorCallback = Callable[[Exception], Awaitable[None]]


@dataclass(frozen=True)
class Credentials:
    """User/password for the NATS server (the password is never logged or put in repr).

    ``inbox_owner`` names the reply inbox when it is not the user's: robot-side nodes connect to the
    robot's own server without a user but must receive replies in ``_INBOX.<robot id>`` (the only inbox
    the robot's leaf link may carry back from the hub).
    """

    user: str = ""
    password: str = field(default="", repr=False)
    inbox_owner: str = ""


def quiet_error_cb(
    log: logging.Logger | Any, url: str, on_error: Callable[[Exception], None] | None = None, *, level: str = "warning"
) -> ErrorCallback:
    """An ``error_cb`` that logs one line per client error (at ``level``; "" = not at all) and hands the
    error to ``on_error`` (counters), never a traceback."""

    async def error_cb(exc: Exception) -> None:
        if on_error is not None:
            on_error(exc)
        if level:
            getattr(log, level)(f"NATS {url}: {type(exc).__name__}: {exc}")

    return error_cb


def server_list(url: str) -> list[str]:
    """``nats_url`` may list several servers, comma-separated (every node of a clustered hub): nats-py
    tries them in turn on connect and reconnect (it also learns the cluster's other nodes from the server)."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise ValueError("empty NATS url")
    return servers


async def connect(
    url: str,
    *,
    name: str,
    credentials: Credentials,
    error_cb: ErrorCallback,
    reconnect: bool,
    **callbacks: Any,
) -> Any:
    """One nats-py connection with the platform's options; raises what ``nats.connect`` raises.

    ``reconnect`` False: a lost connection is closed (``closed_cb``), for a caller with its own reconnect
    loop; True: nats-py reconnects forever every RECONNECT_WAIT_S and restores subscriptions itself.
    ``callbacks``: more ``nats.connect`` keywords (``closed_cb``, ``disconnected_cb``...)."""
    if reconnect:
        policy: dict[str, Any] = {
            "allow_reconnect": True, "max_reconnect_attempts": -1, "reconnect_time_wait": RECONNECT_WAIT_S,
        }  # fmt: skip
    else:
        policy = {"allow_reconnect": False, "max_reconnect_attempts": 1, "reconnect_time_wait": 0}
    return await nats.connect(
        server_list(url),
        name=name,
        connect_timeout=CONNECT_TIMEOUT_S,
        error_cb=error_cb,
        pending_size=CLIENT_PENDING_BYTES,
        **policy,
        **callbacks,
        **connect_options(credentials.user, credentials.password, credentials.inbox_owner),
    )


async def connect_once(url: str, *, name: str, credentials: Credentials, timeout: float | None = None) -> Any:
    """One connection for a command-line call: no reconnect, client errors not logged (the caller reports
    the failure once), at most ``timeout`` (default 2 * CONNECT_TIMEOUT_S + 1). Raises ``TimeoutError``,
    ``OSError`` or ``nats.errors.Error``.

    max_reconnect_attempts=0 would make nats-py retry a refused server forever (its server pool only drops a
    server when the limit is > 0): one retry, then NoServersError; the wait_for bounds a silent server."""

    async def silent(exc: Exception) -> None:
        return None

    return await asyncio.wait_for(
        nats.connect(
            server_list(url), name=name, connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1, error_cb=silent,
            **connect_options(credentials.user, credentials.password, credentials.inbox_owner),
        ),
        2 * CONNECT_TIMEOUT_S + 1 if timeout is None else timeout,
    )  # fmt: skip


async def connect_until_stopped(
    stop: asyncio.Event,
    url: str,
    *,
    name: str,
    credentials: Credentials,
    log: logging.Logger | Any,
    backoff: Backoff | None = None,
) -> Any:
    """The first connection of a client that keeps nats-py's reconnect, retried with capped, jittered
    backoff until it succeeds (the connection) or ``stop`` is set (None). Errors are logged as one line."""
    backoff = backoff or Backoff()
    error_cb = quiet_error_cb(log, url)
    while not stop.is_set():
        try:
            return await connect(url, name=name, credentials=credentials, error_cb=error_cb, reconnect=True)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            log.warning(f"cannot connect to NATS at {url}: {type(exc).__name__}; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next_delay())
    return None


async def close(nc: Any, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Drain while the server is there; when it has gone (it may stop together with us), just close:
    draining a lost connection only ends in cancelled tasks and tracebacks."""
    if nc.is_connected:
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await asyncio.wait_for(nc.drain(), timeout)
    if not nc.is_closed:
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await asyncio.wait_for(nc.close(), timeout)
