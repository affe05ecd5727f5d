"""deploy_service's NATS side: publish statuses, answer function invocations (request/reply).

Subjects (``<id>`` is the robot id):

* ``robots.<id>.deploy.status``: every :class:`~robot_platform.deploy.jobs.Status` as a msgpack dict,
  with headers ``Nats-Msg-Id`` (job id + sequence, for de-duplication), ``rp-type``
  (``robot_platform_interfaces/msg/DeploymentStatus``), ``rp-robot`` and ``rp-seq``; plus the envelope
  headers ``Content-Type``, ``Ros-Type`` (``robot_platform/deploy/Status``: not a ROS type, the dict of
  ``Status.to_dict``) and ``Robot-Id``, so ws_agent relays it to browsers (touch panel, console).
* ``robots.<id>.deploy.installed``: what is installed, as a msgpack map ``{robot_id, stamp, packages:
  [{name, kind, version, versions, running, activated_at}]}`` (``version`` is the active one), with the
  envelope headers (``Ros-Type`` ``robot_platform/deploy/Installed``). Sent when the link connects, after
  every finished job and every ``installed_period_s``: statuses are events, so a console or panel opened
  after the deployments would otherwise never learn which versions run (NATS core keeps nothing).
* ``robots.<id>.deploy.invoke.<package>``: request = msgpack (or JSON) event; reply = msgpack dict
  ``{ok, result, error, logs, invocation_id, duration_s}`` from the function's active version.
* ``robots.<id>.deploy.restart.<package>``: restart the active version of an app (robot_agent's
  ``restart_app`` remote action); reply = msgpack ``{ok, package, version, pid}`` or ``{ok: false, error}``.
* trigger subjects named in function manifests (``{nats: subject}``): each message invokes the function;
  the result goes to ``robots.<id>.deploy.result.<package>``.

The link runs its own asyncio loop in one thread. ``publish_status`` may be called from any thread: it
hands the status to a bounded queue (drop-oldest, counted in ``dropped``) so a slow or absent NATS server
never blocks a deployment. Reconnects use nats.py's own capped reconnect; the first connection is
retried with jittered, capped backoff until :meth:`NatsLink.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
import nats
from nats.errors import Error as NatsError

from robot_platform.common.event_loop import run_to_end
from robot_platform.deploy.errors import DeployError
from robot_platform.deploy.jobs import Status
from robot_platform.messaging.inbox import inbox_prefix

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
RECONNECT_WAIT_S = 1.0
FIRST_CONNECT_BACKOFF_MAX_S = 10.0
STATUS_TYPE = "robot_platform_interfaces/msg/DeploymentStatus"
STATUS_ENVELOPE_TYPE = "robot_platform/deploy/Status"  # envelope Ros-Type: a msgpack map, see Status.to_dict
INSTALLED_ENVELOPE_TYPE = "robot_platform/deploy/Installed"  # envelope Ros-Type of the installed summary
INSTALLED_PERIOD_S = 5.0  # default repeat of the installed summary (a page opened later waits at most this)

Invoker = Callable[[str, Any], dict[str, Any]]
Installed = Callable[[], list[dict[str, Any]]]  # one dict per installed package, see installed_entry
Restarter = Callable[[str], dict[str, Any]]
TriggerFire = Callable[[str, Any, str], bool]


class NatsLink:
    """Publishes deployment statuses to NATS and serves invocation requests."""

    def __init__(
        self,
        url: str,
        robot_id: str,
        invoker: Invoker | None,
        queue_size: int = 100,
        on_trigger: TriggerFire | None = None,
        restarter: Restarter | None = None,
        installed: Installed | None = None,
        installed_period_s: float = INSTALLED_PERIOD_S,
    ) -> None:
        self.url = url
        self.installed_subject = f"robots.{robot_id}.deploy.installed"
        self._installed = installed
        self.installed_period_s = installed_period_s
        self.robot_id = robot_id
        self.status_subject = f"robots.{robot_id}.deploy.status"
        self.invoke_subject = f"robots.{robot_id}.deploy.invoke.*"
        self.restart_subject = f"robots.{robot_id}.deploy.restart.*"
        self._restarter = restarter
        self.dropped = 0
        self.published = 0
        self._invoker = invoker
        self._on_trigger = on_trigger
        self._client: Any = None
        self._trigger_subs: dict[str, Any] = {}
        self._pending_subjects: dict[str, str] | None = None
        self.result_prefix = f"robots.{robot_id}.deploy.result"
        self._seq = 0
        self._loop = asyncio.new_event_loop()
        # Created here (asyncio binds them to the loop on first use) so statuses emitted before the loop
        # runs, e.g. by start-up recovery, are queued rather than lost.
        self._queue: asyncio.Queue[Status] = asyncio.Queue(maxsize=queue_size)
        self._stopping = asyncio.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deploy-nats", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def publish_status(self, status: Status) -> None:
        """Thread-safe, never blocks; when the queue is full the oldest status is dropped (counted)."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop already stopped during shutdown
            self._loop.call_soon_threadsafe(self._enqueue, status)

    def set_trigger_subjects(self, subjects: dict[str, str]) -> None:
        """Subscribe exactly to ``subjects`` (subject -> function package); thread-safe."""
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._reconcile(dict(subjects)), self._loop)

    def publish_result(self, package: str, source: str, result: dict[str, Any]) -> None:
        """Publish a triggered invocation's result on ``robots.<id>.deploy.result.<package>``; thread-safe."""
        body = {"package": package, "source": source, **result}
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._publish_raw(f"{self.result_prefix}.{package}", body), self._loop)

    async def _publish_raw(self, subject: str, body: dict[str, Any]) -> None:
        if self._client is None or not self._client.is_connected:
            self.dropped += 1
            return
        try:
            await self._client.publish(subject, msgpack.packb(body, default=str))
        except (NatsError, OSError):
            self.dropped += 1

    async def _reconcile(self, subjects: dict[str, str]) -> None:
        if self._client is None:
            self._pending_subjects = subjects
            return
        for subject in list(self._trigger_subs):
            if subject not in subjects:
                with contextlib.suppress(NatsError):
                    await self._trigger_subs.pop(subject).unsubscribe()
        for subject, package in subjects.items():
            if subject not in self._trigger_subs:

                async def on_event(msg: Any, package: str = package) -> None:
                    if self._on_trigger is not None:
                        self._on_trigger(package, _decode(msg.data), f"nats:{msg.subject}")

                self._trigger_subs[subject] = await self._client.subscribe(subject, cb=on_event)

    def _enqueue(self, status: Status) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(status)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout_s)

    # ---- loop thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        run_to_end(self._loop, self._main())

    async def _main(self) -> None:
        client = await self._connect_first()
        if client is None:
            return
        try:
            if self._invoker is not None:
                await client.subscribe(self.invoke_subject, cb=self._on_invoke)
            if self._restarter is not None:
                await client.subscribe(self.restart_subject, cb=self._on_restart)
            self._client = client
            if self._pending_subjects:
                await self._reconcile(self._pending_subjects)
            self._connected.set()
            await self._publish_installed(client)
            loop = asyncio.get_running_loop()
            installed_due = loop.time() + self.installed_period_s
            while not self._stopping.is_set():
                getter = asyncio.ensure_future(self._queue.get())
                stopper = asyncio.ensure_future(self._stopping.wait())
                timeout = max(0.0, installed_due - loop.time())
                done, _ = await asyncio.wait({getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    status = getter.result()
                    await self._publish(client, status)
                    if status.state.final:  # the active version may have changed: say so at once
                        installed_due = loop.time()
                else:
                    getter.cancel()
                stopper.cancel()
                if loop.time() >= installed_due and not self._stopping.is_set():
                    await self._publish_installed(client)
                    installed_due = loop.time() + self.installed_period_s
            while not self._queue.empty():  # flush what is left, then drain
                await self._publish(client, self._queue.get_nowait())
        finally:
            try:
                await asyncio.wait_for(client.drain(), timeout=2.0)
            except (NatsError, TimeoutError, OSError):
                # Server gone: close so nats.py's reconnect task ends before the loop does.
                with contextlib.suppress(NatsError, TimeoutError, OSError):
                    await client.close()

    async def _on_nats_error(self, exc: Exception) -> None:
        """One line per error: nats-py's default callback prints a traceback for every refused connect."""
        log.warning("NATS %s: %s: %s", self.url, type(exc).__name__, exc)

    async def _connect_first(self) -> Any:
        attempt = 0
        while not self._stopping.is_set():
            try:
                return await nats.connect(
                    self.url,
                    name=f"deploy_service-{self.robot_id}",
                    inbox_prefix=inbox_prefix(self.robot_id),  # replies cross the leaf only into it
                    connect_timeout=CONNECT_TIMEOUT_S,
                    reconnect_time_wait=RECONNECT_WAIT_S,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=self._on_nats_error,
                )
            except (TimeoutError, NatsError, OSError) as exc:
                attempt += 1
                delay = min(FIRST_CONNECT_BACKOFF_MAX_S, 0.5 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
                log.warning("NATS %s not reachable (%s); retry in %.1f s", self.url, type(exc).__name__, delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        return None

    async def _publish(self, client: Any, status: Status) -> None:
        self._seq += 1
        headers = {
            "Nats-Msg-Id": f"{status.job_id}:{self._seq}",
            "rp-type": STATUS_TYPE,
            "rp-robot": self.robot_id,
            "rp-seq": str(self._seq),
            "Content-Type": "application/msgpack",
            "Ros-Type": STATUS_ENVELOPE_TYPE,
            "Robot-Id": self.robot_id,
        }
        try:
            await client.publish(self.status_subject, msgpack.packb(status.to_dict()), headers=headers)
            self.published += 1
        except (NatsError, OSError) as exc:
            self.dropped += 1
            log.warning("status of job %s not published to NATS: %s", status.job_id, type(exc).__name__)

    async def _publish_installed(self, client: Any) -> None:
        """One installed summary (off the loop: the provider reads the package store from disk)."""
        if self._installed is None or not client.is_connected:
            return
        try:
            packages = await asyncio.to_thread(self._installed)
            body = {"robot_id": self.robot_id, "stamp": time.time(), "packages": packages}
            headers = {
                "Nats-Msg-Id": f"installed:{time.time_ns()}",  # unique also across restarts
                "Content-Type": "application/msgpack",
                "Ros-Type": INSTALLED_ENVELOPE_TYPE,
                "Robot-Id": self.robot_id,
            }
            await client.publish(self.installed_subject, msgpack.packb(body, default=str), headers=headers)
        except (NatsError, OSError, DeployError) as exc:
            log.warning("installed summary not published to NATS: %s", exc)

    async def _on_invoke(self, msg: Any) -> None:
        package = msg.subject.rsplit(".", 1)[-1]
        event = _decode(msg.data)
        assert self._invoker is not None
        try:
            reply = await asyncio.get_running_loop().run_in_executor(None, self._invoker, package, event)
        except DeployError as exc:
            reply = {"ok": False, "error": exc.reason}
        if msg.reply:
            await msg.respond(msgpack.packb(reply, default=str))

    async def _on_restart(self, msg: Any) -> None:
        package = msg.subject.rsplit(".", 1)[-1]
        assert self._restarter is not None
        # The restart waits for the app's health check: run it off the loop so statuses keep flowing.
        reply = await asyncio.get_running_loop().run_in_executor(None, self._restarter, package)
        if msg.reply:
            await msg.respond(msgpack.packb(reply, default=str))


def _decode(data: bytes) -> Any:
    """An event body: msgpack, else JSON, else the text itself (so any publisher can trigger)."""
    if not data:
        return None
    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException):
        pass
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")


def installed_entry(name: str, kind: str, version: str, versions: tuple[str, ...], running: bool,
                    activated_at: float) -> dict[str, Any]:  # fmt: skip
    """One package of the installed summary (``version`` is the active one; ``versions`` all on disk)."""
    return {"name": name, "kind": kind, "version": version, "versions": list(versions), "running": running,
            "activated_at": activated_at}  # fmt: skip
