"""ws_agent's network side: one asyncio event loop (``websockets``) for every connection, no thread each.

Why ``websockets`` (asyncio): it bounds the opening handshake (``open_timeout`` counts from the TCP
accept, so a half-sent request is cut), bounds request lines and headers, lets ``process_request``
answer plain HTTP routes, and costs a coroutine, not a thread, per connection. What it lacks, a cap on
connections before the upgrade, is :class:`~.admission.PendingConnections` (oldest cut first).

Threads: the loop thread ("ws_agent-http") accepts, reads and writes every socket; two small pools run
what may block, in order per client: "ws_agent-login" (``login_threads``, as many as the hash pool
holds) takes requests that carry credentials and the frames of clients not yet logged in (they wait for
a hash), "ws_agent-work" (``worker_threads``) everything else (HTTP routes, files, the frames of
logged-in clients, :meth:`Gateway.handle`), so a login flood never delays logged-in clients. A connection
counts as pending until its request has been answered or admitted. A client's sender is
a coroutine: it polls its session (client_session.py), writes the pre-framed WebSocket frames straight
to the transport and waits for the transport to drain when the client reads slowly; the housekeeping
task cuts a client whose write has not drained for ``stall_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from robot_platform.common.event_loop import run_to_end
from robot_platform.ws.admission import PendingConnections
from robot_platform.ws.client_session import ClientSession
from robot_platform.ws.foxglove_protocol import SUBPROTOCOL as FOXGLOVE
from robot_platform.ws.gateway import Gateway
from robot_platform.ws.http_api import Admitted, HttpApi, HttpReply

HOUSEKEEPING_PERIOD_S = 1.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 2.0  # closing handshake of a client; a stalled one is aborted instead
WRITE_HIGH_WATER_BYTES = 256 * 1024  # the sender waits for the transport below this (then the queue drops)
INCOMING_QUEUE_FRAMES = 16
TOKEN_RE = re.compile(r"(token=)[^&\s'\"]*", re.IGNORECASE)
FLUSH_POLL_S = 0.01
UNFINISHED_LOG_PERIOD_S = 10.0  # connections that never sent a request: one summary line at most this often


@dataclass(frozen=True)
class ServerLimits:
    max_clients: int = 100
    max_clients_per_user: int = 0  # 0: no limit per user (only max_clients)
    max_pending_connections: int = 128
    handshake_timeout_s: float = 5.0
    auth_timeout_s: float = 10.0
    ping_interval_s: float = 25.0
    stall_timeout_s: float = 30.0
    max_frame_bytes: int = 1024 * 1024
    permessage_deflate: bool = False
    worker_threads: int = 4
    login_threads: int = 18


@dataclass
class _Client:
    session: ClientSession
    conn: ServerConnection


class _TrackedConnection(ServerConnection):
    """A connection that is pending (counted, evictable) from accept until its request has arrived."""

    def __init__(self, *args: Any, pending: PendingConnections, release: Callable[[], None],
                 unfinished: Callable[[], None], **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.pending = pending
        self.release = release  # gives back the client slot of an admitted upgrade that never ran
        self.unfinished = unfinished  # counts a connection that went away before its request was complete
        self.admitted: Admitted | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.pending.add(self, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending.done(self):
            self.unfinished()
        if self.admitted is not None:  # admitted, but the handler never took it (refused or cut meanwhile)
            self.admitted = None
            self.release()
        super().connection_lost(exc)


class _RedactTokens(logging.Filter):
    """Whatever websockets logs (warnings, errors), any ``token=...`` in it is redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "token=" in text.lower():
            record.msg, record.args = TOKEN_RE.sub(r"\1<redacted>", text), None
        return True


class _Waker:
    """Wakes sender coroutines from any thread with at most one loop callback in flight.

    A NATS message fanned out to N clients would otherwise cost N ``call_soon_threadsafe`` (a self-pipe
    write and a loop wake-up each); here the first one schedules a callback and the others join it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._due: list[asyncio.Event] = []
        self._scheduled = False

    def wake(self, event: asyncio.Event) -> None:
        with self._lock:
            self._due.append(event)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        with self._lock:
            due, self._due, self._scheduled = self._due, [], False
        for event in due:
            event.set()


class WsServer:
    """Serves :class:`HttpApi` and the rosbridge WebSocket; ``start()`` / ``stop()`` from any thread."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, api: HttpApi, gateway: Gateway,
                 limits: ServerLimits, refuse: Any, log: Any, foxglove: Any = None) -> None:  # fmt: skip
        self.host, self.requested_port, self.ssl_context = host, port, ssl_context
        self.api, self.gateway, self.limits = api, gateway, limits
        self.foxglove = foxglove  # FoxgloveGateway: clients asking for foxglove.websocket.v1 (None: not offered)
        self._refuse, self.log = refuse, log
        self.pending = PendingConnections(limits.max_pending_connections)
        self.clients: dict[str, _Client] = {}
        self._reserved = 0  # admitted upgrades whose handler has not registered yet
        self._workers = ThreadPoolExecutor(max_workers=limits.worker_threads, thread_name_prefix="ws_agent-work")
        self._logins = ThreadPoolExecutor(max_workers=limits.login_threads, thread_name_prefix="ws_agent-login")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waker: _Waker  # made on the loop (see _main)
        self._stop: asyncio.Event | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = port
        self.unfinished_requests = 0
        self._unfinished_logged = 0
        self.ws_log = logging.getLogger("ws_agent.websockets")
        self.ws_log.setLevel(logging.WARNING)  # never the request line: tokens travel in query strings
        if not any(isinstance(f, _RedactTokens) for f in self.ws_log.filters):
            self.ws_log.addFilter(_RedactTokens())

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ws_agent-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"ws_agent did not start listening within {START_TIMEOUT_S} s")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S + CLOSE_TIMEOUT_S + 1.0)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._logins.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        try:
            run_to_end(asyncio.new_event_loop(), self._main())
        except BaseException as exc:  # reported to start(), or logged when already serving
            self._error = exc
            if self._ready.is_set():
                self.log.error(f"ws_agent server loop failed: {exc!r}")
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._waker = _Waker(self._loop)
        self._stop = asyncio.Event()
        ping = self.limits.ping_interval_s or None
        self._server = await serve(
            self._handle, self.host, self.requested_port, ssl=self.ssl_context,
            process_request=self._process_request, select_subprotocol=self._select_subprotocol,
            open_timeout=self.limits.handshake_timeout_s,
            ping_interval=ping, ping_timeout=ping, close_timeout=CLOSE_TIMEOUT_S,
            max_size=self.limits.max_frame_bytes, max_queue=INCOMING_QUEUE_FRAMES,
            write_limit=WRITE_HIGH_WATER_BYTES, compression="deflate" if self.limits.permessage_deflate else None,
            server_header=None, logger=self.ws_log, backlog=max(128, self.limits.max_pending_connections),
            create_connection=functools.partial(_TrackedConnection, pending=self.pending, release=self._release,
                                                unfinished=self._unfinished),  # type: ignore[arg-type]
        )  # fmt: skip
        self.port = self._server.sockets[0].getsockname()[1]
        housekeeping = asyncio.create_task(self._housekeeping())
        self._ready.set()
        await self._stop.wait()
        housekeeping.cancel()
        for client in list(self.clients.values()):
            if client.session.sending_since is not None:  # a close frame would wait behind a stalled write
                client.conn.transport.abort()
        self._server.close(close_connections=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_S)

    # ------------------------------------------------------------------ HTTP and admission
    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        assert isinstance(conn, _TrackedConnection)
        remote = conn.remote_address or ("?", 0)
        pool = self._logins if _has_credentials(request) else self._workers
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(pool, self.api.handle, request.method, request.path,
                                                request.headers, (remote[0], remote[1]))  # fmt: skip
        except RuntimeError:  # pools shut down: stopping
            return _response(HttpReply(503, b"stopping\n"))
        finally:
            self.pending.done(conn)
        if isinstance(result, HttpReply):
            return _response(result)
        if len(self.clients) + self._reserved >= self.limits.max_clients:
            return _response(self.api.refused(503, "too many clients", result.client, "capacity"))
        if result.principal is not None and self._user_full(result.principal, extra=1):
            return _response(self.api.refused(503, f"too many connections for user {result.principal.user!r} "
                                              "(max_clients_per_user)", result.client, "user_capacity"))  # fmt: skip
        self._reserved += 1
        conn.admitted = result
        return None  # websockets checks the upgrade headers and switches protocols

    def _select_subprotocol(self, _conn: ServerConnection, offered: Any) -> str | None:
        """``foxglove.websocket.v1`` when offered (and served); otherwise none: rosbridge."""
        if self.foxglove is not None and FOXGLOVE in offered:
            return FOXGLOVE
        return None

    def _release(self) -> None:
        self._reserved -= 1

    def _user_full(self, principal: Any, extra: int = 0) -> bool:
        """One login may hold at most ``max_clients_per_user`` connections, so a single (leaked or shared)
        credential cannot take every one of the ``max_clients`` slots (a robot has 20) from the others.
        The anonymous role (when configured) is everyone without a login: only ``max_clients`` bounds it."""
        limit, anonymous = self.limits.max_clients_per_user, self.api.access.anonymous
        if not limit or principal is anonymous:
            return False
        held = sum(1 for c in self.clients.values() if c.session.principal is not anonymous
                   and c.session.user == principal.user)  # fmt: skip
        return held + extra > limit

    def _unfinished(self) -> None:
        """A connection closed (by its client, the handshake timeout) before its request was complete:
        counted here (``/healthz`` connections.no_request; not a refusal: a port probe is one too), logged
        as a sum by the housekeeping task (a slow-loris flood is thousands of them)."""
        self.unfinished_requests += 1

    # ------------------------------------------------------------------ one client
    async def _handle(self, conn: ServerConnection) -> None:
        assert isinstance(conn, _TrackedConnection) and conn.admitted is not None
        admitted, conn.admitted = conn.admitted, None
        self._reserved -= 1
        gateway = self.foxglove if conn.subprotocol == FOXGLOVE else self.gateway
        if gateway is self.foxglove and admitted.principal is None:  # the protocol has no login op
            self._refuse("auth")
            self.log.warning(f"refused Foxglove client from {admitted.client}: no credentials (closed 1008)")
            await conn.close(1008, "log in: connect with ?token=user:secret or an Authorization header")
            return
        session = gateway.open(admitted.principal, admitted.client, admitted.address)
        self.clients[session.session_id] = _Client(session, conn)
        sender = asyncio.create_task(self._send_loop(session, conn))
        who = admitted.principal.user if admitted.principal is not None else "(not yet authenticated)"
        kind = "Foxglove client" if gateway is self.foxglove else "client"
        self.log.info(f"{kind} {session.session_id} connected from {admitted.client} as {who}")
        loop = asyncio.get_running_loop()
        auth_deadline = loop.time() + self.limits.auth_timeout_s
        logged_in = session.principal is not None
        try:
            while not session.closed:
                if session.principal is None:
                    async with asyncio.timeout_at(auth_deadline):
                        frame = await conn.recv()
                else:
                    frame = await conn.recv()
                pool = self._logins if session.principal is None else self._workers
                try:
                    keep = await loop.run_in_executor(pool, gateway.handle, session, frame)
                except RuntimeError as exc:
                    if "shutdown" in str(exc):  # the worker pool is shut down: stopping
                        break
                    raise
                self._log_refusals(session)
                if keep and session.principal is not None and not logged_in and self._user_full(session.principal):
                    self._refuse("user_capacity")  # logged in by an auth op: this connection is one too many
                    self.log.warning(f"client {session.session_id} ({session.user}): too many connections for "
                                     "this user (max_clients_per_user): closed (1008)")  # fmt: skip
                    await conn.close(1008, "too many connections for this user")
                    break
                logged_in = session.principal is not None
                if not keep:
                    await self._flush_control(session)  # the status saying why, before the close
                    await conn.close(1008, "too many failed logins")
                    break
        except TimeoutError:
            self._refuse("auth_timeout")
            self.log.warning(f"client {session.session_id} from {admitted.client} did not log in within "
                             f"{self.limits.auth_timeout_s:g} s: closed (1008)")  # fmt: skip
            await conn.close(1008, "authenticate first: send {op: auth} or connect with a token")
        except ConnectionClosed:
            self._closed_by_limit(session, conn)
        except Exception:  # a bug in frame handling: this client is cut with 1011, the agent and others go on
            self._refuse("internal_error")
            self.log.exception(f"client {session.session_id}: handling its message failed; closing it (1011)")
            await conn.close(1011, "internal error handling your message; reconnect")
        finally:
            gateway.close(session)
            self.clients.pop(session.session_id, None)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(sender, CLOSE_TIMEOUT_S)
            refused = ", ".join(f"{k} {n}" for k, n in sorted(session.refusals.items()))
            self.log.info(f"client {session.session_id} ({session.user or '-'}) disconnected"
                          + (f"; refused messages: {refused}" if refused else ""))  # fmt: skip

    def _log_refusals(self, session: ClientSession) -> None:
        """The first refused message of each kind of this client, once; the rest are counted only."""
        for kind, reason in session.take_unlogged():
            self.log.warning(f"client {session.session_id} ({session.user or '-'}, {session.client}): refused "
                             f"message ({kind}): {reason}; more of this kind are counted, not logged")  # fmt: skip

    def _closed_by_limit(self, session: ClientSession, conn: ServerConnection) -> None:
        """websockets closes a connection whose frame passes ``max_frame_bytes`` (1009) itself: count, log."""
        sent = conn.protocol.close_sent
        if sent is not None and sent.code == 1009:
            self._refuse("oversized")
            session.note_refusal("oversized", sent.reason)
            self.log.warning(f"client {session.session_id} ({session.user or '-'}, {session.client}): closed "
                             f"(1009): {sent.reason}")  # fmt: skip

    @staticmethod
    async def _flush_control(session: ClientSession) -> None:
        """Give the sender up to CLOSE_TIMEOUT_S to write the queued status messages."""
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while session.queued_control and time.monotonic() < deadline:
            await asyncio.sleep(FLUSH_POLL_S)

    async def _send_loop(self, session: ClientSession, conn: ServerConnection) -> None:
        """Writes pre-framed batches (one write per batch, framed once per message for every client)."""
        ready = asyncio.Event()
        wake = functools.partial(self._waker.wake, ready)
        while True:
            ready.clear()
            batch, next_due = session.poll(wake)
            if batch is None:
                return
            if not batch:
                timeout = None if next_due is None else max(0.0, next_due - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await ready.wait()
                continue
            frames = session.render_wire(batch)
            if conn.protocol.state is not State.OPEN:
                session.close()
                return
            conn.transport.write(b"".join(frames))
            session.sending_since = time.monotonic()
            try:
                await conn.drain()
            except (ConnectionError, ConnectionClosed):
                session.close()
                return
            finally:
                session.sending_since = None
            await asyncio.sleep(0)  # drain() returns at once below the high-water mark: let the others run

    async def _housekeeping(self) -> None:
        last_summary = float("-inf")  # the first connection that never sent a request is reported at once
        while True:
            await asyncio.sleep(HOUSEKEEPING_PERIOD_S)
            now = time.monotonic()
            if self.unfinished_requests > self._unfinished_logged and now - last_summary >= UNFINISHED_LOG_PERIOD_S:
                count = self.unfinished_requests - self._unfinished_logged
                self.log.warning(f"{count} connection(s) closed before sending a complete request (handshake_timeout_s "
                                 f"{self.limits.handshake_timeout_s:g}); counted in connections.no_request, summed up "
                                 f"every {UNFINISHED_LOG_PERIOD_S:g} s")  # fmt: skip
                self._unfinished_logged, last_summary = self.unfinished_requests, now
            for client in list(self.clients.values()):
                since = client.session.sending_since
                if since is not None and now - since > self.limits.stall_timeout_s:
                    self._refuse("stalled")
                    self.log.warning(f"client {client.session.session_id} stalled for {now - since:.0f}s: "
                                     "disconnecting it")  # fmt: skip
                    client.session.close()
                    client.conn.transport.abort()

    def snapshot(self) -> dict[str, int]:
        return {
            "clients": len(self.clients),
            "pending": len(self.pending),
            "pending_peak": self.pending.peak,
            "pending_evicted": self.pending.evicted,
            "no_request": self.unfinished_requests,
        }


def _has_credentials(request: Request) -> bool:
    return "Authorization" in request.headers or "token=" in request.path


def _response(reply: HttpReply) -> Response:
    headers = Headers(
        [("Connection", "close"), ("Content-Length", str(len(reply.body))), ("Content-Type", reply.content_type)]
    )
    for key, value in reply.headers.items():
        headers[key] = value
    return Response(reply.status, http.HTTPStatus(reply.status).phrase, headers, reply.body)
