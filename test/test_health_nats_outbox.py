"""health NatsPublisher against a real nats-server: alerts raised while the server is down are kept in
the outbox and land in JetStream once it is up; retries do not duplicate; the link status follows."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import msgpack
import nats

from helpers import free_port, wait_for, wait_port
from robot_platform.health.nats_out import NatsPublisher, OutMsg
from robot_platform.health.sources import LinkStatus

SUBJECT = "robots.r9.alerts"
STREAM = "ALERTS_r9"


def start_server(procs, tmp_path: Path, port: int, name: str):
    conf = tmp_path / f"{name}.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {str(tmp_path / 'js')!r} }}\n")
    child = procs.start(name, [shutil.which("nats-server") or "nats-server", "-c", str(conf)])
    wait_port(port)
    return child


def stored(url: str) -> list[tuple[str, dict]]:
    async def fetch() -> list[tuple[str, dict]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(STREAM)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                raw = await js.get_msg(STREAM, seq)
                out.append((raw.headers["Nats-Msg-Id"], msgpack.unpackb(raw.data)))
            return out
        finally:
            await nc.close()

    return asyncio.run(fetch())


def alert(i: int) -> OutMsg:
    return OutMsg(SUBJECT, msgpack.packb({"alert_id": f"a{i}", "active": True}), {"Nats-Msg-Id": f"a{i}.raise"})


def test_alerts_survive_a_server_outage(procs, tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    link = LinkStatus("nats")
    results: list[tuple[str, str]] = []
    pub = NatsPublisher(
        url, SUBJECT, stream=STREAM, link=link, on_result=lambda k, r: results.append((k, r)), outbox_max=5
    )
    pub.start()
    try:
        for i in range(7):  # server not running yet: queued; 2 oldest dropped (outbox of 5), counted
            pub.publish_alert(alert(i))
        assert pub.pending() == 5 and pub.dropped == 2 and results.count(("alert", "dropped")) == 2
        assert link.get()[0] is False
        server = start_server(procs, tmp_path, port, "nats-a")
        wait_for(lambda: pub.pending() == 0, 20.0, "outbox to drain into JetStream")
        assert link.get()[0] is True
        assert [mid for mid, _ in stored(url)] == [f"a{i}.raise" for i in range(2, 7)]

        # Server goes away, an alert is raised meanwhile, the server comes back with the same store.
        server.send_signal(2)
        server.wait(10)
        wait_for(lambda: link.get()[0] is False, 10.0, "link down")
        pub.publish_alert(alert(7))
        pub.publish_alert(alert(6))  # a re-send of an already stored alert: JetStream drops the duplicate
        time.sleep(0.3)  # a negative check needs a window: nothing can leave while the server is down
        assert pub.pending() == 2
        start_server(procs, tmp_path, port, "nats-b")
        wait_for(lambda: pub.pending() == 0, 30.0, "outbox to drain after reconnect")
        assert [mid for mid, _ in stored(url)] == [f"a{i}.raise" for i in range(2, 8)]
    finally:
        pub.close()
    assert link.get()[0] is False


def test_durable_outbox_replays_after_a_restart_exactly_once(procs, tmp_path: Path) -> None:
    """Alerts queued by a publisher that stopped during an outage are sent by the next one, in order;
    one that JetStream had already stored (ack lost before the crash) is not stored twice."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    path = tmp_path / "state" / "nats_outbox.sqlite3"
    first = NatsPublisher(url, SUBJECT, stream=STREAM, link=LinkStatus("nats"), outbox_path=path)
    first.start()
    for i in range(3):
        first.publish_alert(alert(i))
    first.close()  # the server never came up: the alerts stay on disk
    assert first.pending() == 3 and path.exists()

    start_server(procs, tmp_path, port, "nats-c")

    async def store_a0_directly() -> None:  # as if a0 was stored but its ack lost before the restart
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name=STREAM, subjects=[SUBJECT], duplicate_window=120)
            await js.publish(SUBJECT, alert(0).body, headers=alert(0).headers)
        finally:
            await nc.close()

    asyncio.run(store_a0_directly())
    results: list[tuple[str, str]] = []
    second = NatsPublisher(
        url,
        SUBJECT,
        stream=STREAM,
        link=LinkStatus("nats"),
        outbox_path=path,
        on_result=lambda k, r: results.append((k, r)),
    )
    assert second.outbox.replayed == 3
    second.start()
    try:
        second.publish_alert(alert(3))  # raised after the restart: queued behind the replayed ones
        wait_for(lambda: second.pending() == 0, 20.0, "replayed outbox to drain")
    finally:
        second.close()
    assert [mid for mid, _ in stored(url)] == [f"a{i}.raise" for i in range(4)]
    assert results.count(("alert", "ok")) == 4  # a0 was acknowledged (as a duplicate) and removed
