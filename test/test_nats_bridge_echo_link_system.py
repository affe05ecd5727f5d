"""System tests of the NATS side without ROS: echo against a real server, and the link's resilience
(server down at start, restarted while running) with a bounded outbox."""

from __future__ import annotations

import asyncio
import io
import shutil
import time
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest

from helpers import free_port, wait_for, wait_port
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.envelope import Envelope
from robot_platform.messaging.nats_link import NatsLink


async def _publish_later(url: str, subject: str, bodies: list[bytes], headers: dict[str, str] | None) -> None:
    nc = await nats.connect(url)
    try:
        await asyncio.sleep(0.3)  # echo's subscription must be in place; echo itself is awaited below
        for body in bodies:
            await nc.publish(subject, body, headers=headers)
        await nc.flush()
    finally:
        await nc.close()


def test_echo_prints_yaml_and_skips_garbage(nats_server: Any) -> None:
    from robot_platform.cli.echo import echo

    out = io.StringIO()
    headers = Envelope(type_name="std_msgs/msg/String", msg_id="id-1", robot_id="r1").headers()
    bodies = [msgpack.packb({"data": "hello"}), b"\xc1junk", msgpack.packb({"data": "bye", "n": b"\x01\x02"})]

    async def run() -> int:
        task = asyncio.create_task(echo(nats_server.url, "robots.r1.ros.>", 2, out, show_headers=True))
        await _publish_later(nats_server.url, "robots.r1.ros.chatter", bodies, headers)
        return await asyncio.wait_for(task, timeout=10)

    assert asyncio.run(run()) == 2
    text = out.getvalue()
    assert "data: hello\n---\n" in text
    assert "data: bye\nn:\n- 1\n- 2\n---\n" in text
    assert "malformed payload on 'robots.r1.ros.chatter'" in text
    assert "# Ros-Type: std_msgs/msg/String" in text


def start_server(procs: Any, tmp_path: Path, port: int, name: str) -> Any:
    conf = tmp_path / f"{name}.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\nserver_name: {name}\n")
    proc = procs.start(name, [shutil.which("nats-server"), "-c", str(conf)])
    wait_port(port)
    return proc


@pytest.mark.timeout(60)
def test_link_survives_server_down_at_start_and_restart(procs: Any, tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    received: list[bytes] = []
    link = NatsLink(url, lambda *_: None, outbox_capacity=5, backoff=Backoff(0.05, 0.3))
    link.start()
    try:
        for i in range(8):  # server is down: only the newest 5 are kept, 3 counted as dropped
            link.publish("robots.r1.ros.n", bytes([i]), {"Nats-Msg-Id": str(i)})
        wait_for(lambda: link.counters.connect_failures >= 2, 10, "connect failures while the server is down")
        assert link.queued == 5 and link.counters.dropped_outbox == 3

        async def collect(n: int, action: Any = None) -> list[bytes]:
            nc = await nats.connect(url)
            got: list[bytes] = []

            async def on_msg(msg: Any) -> None:
                got.append(msg.data)

            await nc.subscribe("robots.r1.ros.>", cb=on_msg)
            await nc.flush()
            if action:
                action()
            deadline = time.monotonic() + 10
            while len(got) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await nc.close()
            return got

        server = start_server(procs, tmp_path, port, "late")
        # The link flushes the outbox as soon as it connects, possibly before a subscriber exists; use
        # the counters to see that the 5 kept messages went out, then check live traffic end to end.
        wait_for(lambda: link.connected and link.counters.sent == 5, 10, "outbox flushed after connect")
        received = asyncio.run(collect(1, lambda: link.publish("robots.r1.ros.n", b"live", {})))
        assert received == [b"live"]

        server.terminate()
        server.wait(timeout=10)
        wait_for(lambda: not link.connected, 10, "link notices the server is gone")
        link.publish("robots.r1.ros.n", b"while-down", {})
        start_server(procs, tmp_path, port, "again")
        wait_for(lambda: link.connected, 15, "link reconnects after restart")
        assert link.counters.connects == 2 and link.counters.disconnects == 1
        wait_for(lambda: link.queued == 0, 10, "queued message sent after reconnect")
        received = asyncio.run(collect(1, lambda: link.publish("robots.r1.ros.n", b"after", {})))
        assert received == [b"after"]
    finally:
        link.stop()
    assert not link._thread.is_alive()


def test_event_stream_conflict_is_reported_clearly(nats_server: Any) -> None:
    """If another node already made a stream for robots.<id>.alerts, the bridge says which and what to do."""
    from robot_platform.messaging.streams import StreamConflictError, ensure_stream, events_stream_config

    async def run() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="ALERTS_r1", subjects=["robots.r1.alerts"])
            with pytest.raises(StreamConflictError) as err:
                await ensure_stream(nc, events_stream_config("r1"))
            assert err.value.other == "ALERTS_r1" and err.value.subject == "robots.r1.alerts"
            await js.delete_stream("ALERTS_r1")
            await ensure_stream(nc, events_stream_config("r1"))
            await ensure_stream(nc, events_stream_config("r1"))  # idempotent
            info = await js.stream_info("EVENTS_r1")
            assert info.config.subjects == ["robots.r1.alerts", "robots.r1.deploy.>"]
        finally:
            await nc.close()

    asyncio.run(run())
