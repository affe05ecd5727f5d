"""Clustered hub, the quick part: 3 real nats-servers (site_setup/nats_config.py ``HubCluster``) and one
robot leaf listing all three; ``FLEET_EVENTS`` is the platform's own config (R3 through ``ensure_stream``).

While the robot publishes an alert every 0.1 s, the node its leaf link is on, made the leader of
``FLEET_EVENTS`` first (leader step-downs), is killed with -9: the worst case, the robot's link and the
stream's leader (which runs the sourcing) die together. Checked: the stream has 3 replicas; the robot
re-links to another node by itself; a new leader takes over and every alert (before, during and after) is
in ``FLEET_EVENTS`` exactly once; the killed node, restarted on its store, becomes a current replica.
The whole control side under the same kill (services, console, rollout): test/long/test_hub_cluster.py.
About 20-30 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats

from hub_cluster import NODES, ClusteredHub, all_current, move_leader, replica_state, stream_ids, until
from robot_platform.messaging import streams
from robot_platform.messaging.envelope import Envelope

ROBOT = "r1"
ALERT_PERIOD_S = 0.1
WAIT_S = 60.0


def test_fleet_events_survive_kill9_of_its_leader(procs: Any, tmp_path: Path) -> None:
    hub = ClusteredHub(procs, tmp_path, (ROBOT,))
    asyncio.run(asyncio.wait_for(_scenario(hub), 240))


async def _scenario(hub: ClusteredHub) -> None:
    await hub.wait_jetstream()
    robot = await nats.connect(hub.robot_urls[ROBOT])
    await streams.ensure_stream(robot, streams.events_stream_config(ROBOT))
    control = await hub.control()
    await streams.ensure_stream(control, streams.events_hub_stream_config([ROBOT]))
    info = await control.jetstream().stream_info(streams.EVENTS_HUB_STREAM)
    assert info.config.num_replicas == 3, "FLEET_EVENTS must be R3 on a clustered hub"
    await until(lambda: ROBOT in hub.linked(), "the robot's leaf link", WAIT_S)

    sent: list[str] = []
    stop = asyncio.Event()

    async def raise_alerts() -> None:
        while not stop.is_set():
            msg_id = f"{ROBOT}-alert-{len(sent)}-{uuid.uuid4().hex[:8]}"
            headers = Envelope("robot_platform_interfaces/msg/Alert", msg_id=msg_id, robot_id=ROBOT).headers()
            await robot.publish(f"robots.{ROBOT}.alerts", msgpack.packb({"code": "TEST"}), headers=headers)
            sent.append(msg_id)
            await asyncio.sleep(ALERT_PERIOD_S)

    alerts = asyncio.create_task(raise_alerts())
    try:
        await until(lambda: _count_at_least(control, 5), "alerts sourced before the kill", WAIT_S)
        victim = hub.linked()[ROBOT]
        leader = hub.name(victim)
        assert await move_leader(control, streams.EVENTS_HUB_STREAM, leader), "could not move the leader"
        t_kill = hub.kill_node(victim)
        others = {hub.name(i) for i in range(NODES)} - {leader}

        async def new_leader() -> str:
            try:
                name, _ = await replica_state(control, streams.EVENTS_HUB_STREAM)
            except (nats.errors.Error, TimeoutError):
                return ""
            return name if name in others else ""

        await until(lambda: hub.linked().get(ROBOT) not in (None, victim), "the robot re-linked elsewhere", WAIT_S)
        relinked_s = time.monotonic() - t_kill
        await until(new_leader, "a new FLEET_EVENTS leader", WAIT_S)
        elected_s = time.monotonic() - t_kill
        await asyncio.sleep(2.0)  # alerts while the node is dead
        hub.start_node(victim)
        t_back = time.monotonic()
        await asyncio.sleep(1.0)
        stop.set()
        await alerts
        await robot.flush()

        async def all_arrived() -> bool:
            try:
                return len(await stream_ids(control, streams.EVENTS_HUB_STREAM)) >= len(sent)
            except (nats.errors.Error, TimeoutError):
                return False

        await until(all_arrived, f"all {len(sent)} alerts in FLEET_EVENTS", 120.0)
        all_in_s = time.monotonic() - t_kill
        await asyncio.sleep(1.0)  # a late duplicate would show up now
        ids = await stream_ids(control, streams.EVENTS_HUB_STREAM)
        assert set(sent) - set(ids) == set(), "alerts lost"
        assert len(ids) == len(set(ids)) == len(sent), f"{len(ids) - len(set(ids))} duplicates"
        names = {hub.name(i) for i in range(NODES)}
        await until(lambda: all_current(control, streams.EVENTS_HUB_STREAM, names), "the restarted node current",
                    WAIT_S)  # fmt: skip
        caught_up_s = time.monotonic() - t_back
        assert hub.linked().get(ROBOT) is not None
        print(
            f"\nclustered hub: {leader} (robot's leaf, FLEET_EVENTS leader) killed -9; robot re-linked "
            f"in {relinked_s:.1f} s, new leader by {elected_s:.1f} s; "
            f"all {len(sent)} alerts exactly once {all_in_s:.1f} s after the kill; restarted node current "
            f"{caught_up_s:.1f} s after its restart"
        )
    finally:
        stop.set()
        alerts.cancel()
        await asyncio.gather(alerts, return_exceptions=True)
        await robot.close()
        await control.close()


async def _count_at_least(nc: Any, n: int) -> bool:
    try:
        return len(await stream_ids(nc, streams.EVENTS_HUB_STREAM)) >= n
    except (nats.errors.Error, TimeoutError):
        return False
