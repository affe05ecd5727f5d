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

Built on the platform's :class:`~robot_platform.messaging.nats_link.NatsLink` (its thread, reconnect with
backoff, subscriptions restored). Every method may be called from any thread and never blocks: statuses,
results and summaries wait in the link's bounded outbox (drop-oldest, counted in its ``dropped_outbox``),
so a slow or absent NATS server never holds up a deployment, and what was published before the link
connected (start-up recovery) goes out once it does. Invocations and restarts run off the link's loop
(they wait for the function or the app's health check) and answer on the request's reply subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

from robot_platform.deploy.errors import DeployError
from robot_platform.deploy.jobs import Status
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.nats_link import NatsLink

log = logging.getLogger(__name__)

STATUS_TYPE = "robot_platform_interfaces/msg/DeploymentStatus"
STATUS_ENVELOPE_TYPE = "robot_platform/deploy/Status"  # envelope Ros-Type: a msgpack map, see Status.to_dict
INSTALLED_ENVELOPE_TYPE = "robot_platform/deploy/Installed"  # envelope Ros-Type of the installed summary
INSTALLED_PERIOD_S = 5.0  # default repeat of the installed summary (a page opened later waits at most this)

Invoker = Callable[[str, Any], dict[str, Any]]
Installed = Callable[[], list[dict[str, Any]]]  # one dict per installed package, see installed_entry
Restarter = Callable[[str], dict[str, Any]]
TriggerFire = Callable[[str, Any, str], bool]
Message = tuple[str, bytes, dict[str, str]]  # subject, body, headers


class DeployNatsAdapter:
    """deploy_service's subjects on a :class:`NatsLink`: statuses and summaries out, invocations in."""

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
        self.robot_id = robot_id
        self.status_subject = f"robots.{robot_id}.deploy.status"
        self.installed_subject = f"robots.{robot_id}.deploy.installed"
        self.invoke_subject = f"robots.{robot_id}.deploy.invoke.*"
        self.restart_subject = f"robots.{robot_id}.deploy.restart.*"
        self.result_prefix = f"robots.{robot_id}.deploy.result"
        self.installed_period_s = installed_period_s
        self._installed = installed
        self._on_trigger = on_trigger
        self._serve: dict[str, Callable[[str, Any], dict[str, Any]]] = {}
        if invoker is not None:
            self._serve[self.invoke_subject] = lambda package, data: invoker(package, _decode(data))
        if restarter is not None:
            self._serve[self.restart_subject] = lambda package, data: restarter(package)
        self._lock = threading.Lock()
        self._seq = 0
        self._triggers: dict[str, str] = {}  # subject -> package, under _lock
        self._installed_now = asyncio.Event()  # link thread: publish the summary at once
        self.link = NatsLink(
            url,
            name=f"deploy_service-{robot_id}",
            outbox_capacity=queue_size,
            credentials=Credentials(inbox_owner=robot_id),  # replies cross the leaf only into _INBOX.<id>
            log=log,
            on_connected=self._on_connected,
            requests=tuple(self._serve),
            on_request=self._on_request,
        )

    def start(self) -> None:
        self.link.start()
        self.link.spawn(self._installed_loop)

    def wait_connected(self, timeout_s: float) -> bool:
        return self.link.wait_connected(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (bounded by the link's drain time), then close the connection."""
        self.link.stop(timeout_s)

    def publish_status(self, status: Status) -> None:
        """Queue one status; a final one also brings the installed summary forward (the active version
        may have changed)."""
        self.link.publish(*self.status_message(status))
        if status.state.final:
            self.link.spawn(self._publish_installed_soon)

    def set_trigger_subjects(self, subjects: dict[str, str]) -> None:
        """Subscribe exactly to ``subjects`` (subject -> function package)."""
        with self._lock:
            gone = [s for s in self._triggers if s not in subjects]
            changed = {s: p for s, p in subjects.items() if self._triggers.get(s) != p}
            self._triggers = dict(subjects)
        for subject in gone:
            self.link.unsubscribe(subject)
        for subject, package in changed.items():
            self.link.subscribe(subject, self._trigger_handler(package))

    def publish_result(self, package: str, source: str, result: dict[str, Any]) -> None:
        """Publish a triggered invocation's result on ``robots.<id>.deploy.result.<package>``."""
        body = {"package": package, "source": source, **result}
        self.link.publish(f"{self.result_prefix}.{package}", msgpack.packb(body, default=str), {})

    def status_message(self, status: Status) -> Message:
        """A status with its de-duplication id, the legacy ``rp-*`` headers and the platform envelope."""
        with self._lock:
            self._seq += 1
            seq = self._seq
        headers = {
            "Nats-Msg-Id": f"{status.job_id}:{seq}",
            "rp-type": STATUS_TYPE,
            "rp-robot": self.robot_id,
            "rp-seq": str(seq),
            "Content-Type": "application/msgpack",
            "Ros-Type": STATUS_ENVELOPE_TYPE,
            "Robot-Id": self.robot_id,
        }
        return self.status_subject, msgpack.packb(status.to_dict()), headers

    def installed_message(self, packages: list[dict[str, Any]]) -> Message:
        body = {"robot_id": self.robot_id, "stamp": time.time(), "packages": packages}
        headers = {
            "Nats-Msg-Id": f"installed:{time.time_ns()}",  # unique also across restarts
            "Content-Type": "application/msgpack",
            "Ros-Type": INSTALLED_ENVELOPE_TYPE,
            "Robot-Id": self.robot_id,
        }
        return self.installed_subject, msgpack.packb(body, default=str), headers

    # ---- link thread ------------------------------------------------------------------------------
    def _trigger_handler(self, package: str) -> Callable[[str, dict[str, str] | None, bytes], None]:
        def on_event(subject: str, headers: dict[str, str] | None, data: bytes) -> None:
            if self._on_trigger is not None:
                self._on_trigger(package, _decode(data), f"nats:{subject}")

        return on_event

    async def _on_connected(self, nc: Any) -> None:
        self._installed_now.set()

    async def _publish_installed_soon(self) -> None:
        self._installed_now.set()

    async def _installed_loop(self) -> None:
        """The installed summary at every connect, after every finished job and every period."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._installed_now.wait(), self.installed_period_s)
            self._installed_now.clear()
            await self.publish_installed()

    async def publish_installed(self) -> None:
        """One installed summary, if connected (off the loop: the provider reads the package store from
        disk). A summary is never queued while the link is down: the next connect sends a fresh one."""
        if self._installed is None or not self.link.connected:
            return
        try:
            packages = await asyncio.to_thread(self._installed)
        except (DeployError, OSError) as exc:
            log.warning("installed summary not published to NATS: %s", exc)
            return
        self.link.publish(*self.installed_message(packages))

    def _on_request(self, pattern: str, subject: str, reply: str, headers: dict[str, str] | None, data: bytes) -> None:
        self.link.spawn(self._answer, self._serve[pattern], subject, reply, data)

    async def _answer(self, serve: Callable[[str, Any], dict[str, Any]], subject: str, reply: str,
                      data: bytes) -> None:  # fmt: skip
        """Run an invocation or restart off the loop (it waits for the function or the app's health
        check) so statuses keep flowing, and answer on the reply subject."""
        package = subject.rsplit(".", 1)[-1]
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, serve, package, data)
        except DeployError as exc:
            result = {"ok": False, "error": exc.reason}
        if reply:
            self.link.publish(reply, msgpack.packb(result, default=str), {})


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
