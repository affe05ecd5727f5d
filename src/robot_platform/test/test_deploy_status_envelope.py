"""deploy_service's NATS statuses carry the platform envelope, so ws_agent relays them to browsers."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from robot_platform.deploy.jobs import State, Status
from robot_platform.deploy.nats_adapter import (
    INSTALLED_ENVELOPE_TYPE,
    STATUS_ENVELOPE_TYPE,
    DeployNatsAdapter,
    installed_entry,
)
from robot_platform.messaging.envelope import Envelope
from robot_platform.ws.fanout import Hub


class Recorder:
    """Stands in for the NATS link: keeps what would be published."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.sent.append((subject, body, headers))


def test_status_headers_pass_the_envelope_check_and_reach_a_ws_client() -> None:
    adapter = DeployNatsAdapter("nats://127.0.0.1:1", "r3", invoker=None)
    status = Status("r3", "job-1", "nav_app", "1.2.0", "1.1.0", State.IN_PROGRESS, "install", 0.5)
    subject, body, headers = adapter.status_message(status)
    env = Envelope.from_headers(subject, headers)
    assert (env.type_name, env.robot_id, env.msg_id) == (STATUS_ENVELOPE_TYPE, "r3", "job-1:1")
    assert headers["rp-type"] == "robot_platform_interfaces/msg/DeploymentStatus"  # unchanged for old readers
    assert msgpack.unpackb(body)["state_name"] == "IN_PROGRESS"

    interest: list[Any] = []
    hub = Hub(lambda s, on: interest.append((s, on)), 1 << 20)
    delivered: list[Any] = []

    class Session:
        def offer(self, sub: Any, out: Any) -> None:
            delivered.append(out.msg())

    hub._index = {subject: ((Session(), object()),)}  # one subscribed client, routed by subject
    assert hub.deliver(subject, headers, body) == 1
    assert delivered[0]["progress"] == 0.5 and delivered[0]["step"] == "install"


def test_installed_summary_passes_the_envelope_check_and_names_active_versions() -> None:
    """A page opened after the deployments learns what runs from this summary (statuses are events)."""
    packages = [installed_entry("hello_app", "app", "1.1.0", ("1.0.0", "1.1.0"), True, 1700000000.0)]
    adapter = DeployNatsAdapter("nats://127.0.0.1:1", "r3", invoker=None, installed=lambda: packages)
    adapter.link = client = Recorder()  # type: ignore[assignment]
    asyncio.run(adapter.publish_installed())
    subject, body, headers = client.sent[0]
    assert subject == "robots.r3.deploy.installed"
    env = Envelope.from_headers(subject, headers)
    assert (env.type_name, env.robot_id) == (INSTALLED_ENVELOPE_TYPE, "r3")
    summary = msgpack.unpackb(body)
    assert summary["robot_id"] == "r3"
    assert summary["packages"] == [
        {"name": "hello_app", "kind": "app", "version": "1.1.0", "versions": ["1.0.0", "1.1.0"], "running": True,
         "activated_at": 1700000000.0}
    ]  # fmt: skip


def test_installed_summary_is_skipped_without_a_provider() -> None:
    adapter = DeployNatsAdapter("nats://127.0.0.1:1", "r3", invoker=None)
    adapter.link = client = Recorder()  # type: ignore[assignment]
    asyncio.run(adapter.publish_installed())
    assert client.sent == []
