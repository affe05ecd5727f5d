"""ws_agent access control: hashed secrets, users file, roles per operation, origins, audit, gateway."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgpack
import pytest

from robot_platform.messaging.codec import Codec
from robot_platform.messaging.rostypes import TypeRegistry
from robot_platform.ws import access, hashing, user_roles
from robot_platform.ws.access import AccessControl
from robot_platform.ws.audit import Auditor
from robot_platform.ws.client_session import ClientSession
from robot_platform.ws.errors import AccessDeniedError, AuthError, UsersFileError
from robot_platform.ws.fanout import Hub
from robot_platform.ws.gateway import Gateway, GatewayLimits
from robot_platform.ws.origin import HostPolicy, OriginPolicy
from robot_platform.ws.topics import Mode, TopicMapper

SECRETS = {"vera": "viewer-pw", "otto": "operator-pw", "ada": "admin-pw"}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.yaml"
    roles = {"vera": "viewer", "otto": "operator", "ada": "admin"}
    lines = ["users:"]
    for name, role in roles.items():
        method = "pbkdf2_sha256" if name == "ada" else "scrypt"
        lines.append(f"  {name}: {{role: {role}, secret_hash: '{hashing.hash_secret(SECRETS[name], method)}'}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_hash_lines_verify_and_never_contain_the_secret() -> None:
    line = hashing.hash_secret("correct horse")
    assert "correct horse" not in line and line.startswith("scrypt$16384$8$1$")
    assert hashing.verify_secret(line, "correct horse")
    assert not hashing.verify_secret(line, "correct horsf")
    assert hashing.hash_secret("x") != hashing.hash_secret("x")  # salted


def test_authenticate_each_role_and_wrong_tokens(users_file: Path) -> None:
    ac = AccessControl.from_file(users_file)
    assert ac.authenticate_token("otto:operator-pw").role.name == "operator"
    assert ac.authenticate("ada", "admin-pw").role.name == "admin"
    for token in ("otto:wrong", "nobody:operator-pw", "otto", "otto:"):
        with pytest.raises(AuthError) as info:
            ac.authenticate_token(token)
        assert "operator-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("role", "action", "subject", "allowed"),
    [
        ("viewer", "subscribe", "robots.r1.ros.odom", True),
        ("viewer", "subscribe", "robots.r1.alerts", True),
        ("viewer", "publish", "robots.r1.cmd.cmd_vel", False),
        ("viewer", "call", "robots.r1.srv.robot_sim.estop", False),
        ("operator", "publish", "robots.r1.cmd.cmd_vel", True),
        ("operator", "publish", "robots.r1.cmd.estop", True),
        ("operator", "publish", "robots.r1.cmd.alerts.ack", True),
        ("operator", "call", "robots.r1.srv.robot_sim.estop", True),
        ("operator", "call", "robots.r1.srv.robot_sim.pause", True),
        ("operator", "publish", "robots.r1.cmd.deploy", False),
        ("operator", "call", "robots.r1.srv.deploy_service.deploy", False),
        ("operator", "call", "robots.r1.srv.robot_sim.inject_fault", False),
        ("admin", "call", "robots.r1.srv.deploy_service.deploy", True),
        ("admin", "publish", "robots.r1.cmd.anything", True),
        ("admin", "subscribe", "robots.r1.ros.odom", True),
    ],
)
def test_role_rules(users_file: Path, role: str, action: str, subject: str, allowed: bool) -> None:
    ac = AccessControl.from_file(users_file)
    assert ac.roles[role].allows(action, subject) is allowed
    user = {"viewer": "vera", "operator": "otto", "admin": "ada"}[role]
    p = ac.authenticate(user, SECRETS[user])
    if allowed:
        ac.check(p, action, subject)
    else:
        with pytest.raises(AccessDeniedError, match=f"may not {action}"):
            ac.check(p, action, subject)


def test_subject_matching() -> None:
    m = user_roles.subject_matches
    assert m("robots.*.ros.>", "robots.r1.ros.a.b") and not m("robots.*.ros.>", "robots.r1.ros")
    assert m("a.*", "a.b") and not m("a.*", "a.b.c") and not m("a.b", "a.b.c")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("users: [1]", "'users' must map"),
        ("users:\n  x: {role: king, secret_hash: 'scrypt$16384$8$1$AA==$AA=='}", "role 'king'"),
        ("users:\n  x: {role: viewer, secret_hash: 'plaintext'}", "secret_hash"),
        ("users:\n  x: {role: viewer, secret_hash: 'scrypt$1024$8$1$AA==$AA=='}", "n >= 16384"),
        ("users:\n  x: {role: viewer, secret_hash: 'pbkdf2_sha256$1000$AA==$AA=='}", "iterations"),
        ("roles:\n  a: {inherits: b}\n  b: {inherits: a}", "cycle"),
        ("roles:\n  a: {write: ['>']}", "unknown keys"),
        ("{{{", "not valid YAML"),
    ],
)
def test_bad_users_files_are_typed_errors(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "u.yaml"
    path.write_text(content)
    with pytest.raises(UsersFileError, match=reason):
        AccessControl.from_file(path)


def test_custom_role_and_anonymous_role(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_text("roles:\n  teleop: {inherits: viewer, publish: ['robots.r1.cmd.cmd_vel']}\nusers: {}\n")
    ac = AccessControl.from_file(path, anonymous_role="viewer")
    assert ac.roles["teleop"].allows("publish", "robots.r1.cmd.cmd_vel")
    assert not ac.roles["teleop"].allows("publish", "robots.r2.cmd.cmd_vel")
    assert ac.anonymous is not None and ac.anonymous.role.name == "viewer"


def test_credentials_from_request() -> None:
    import base64

    assert access.credentials_from_request("Bearer otto:pw", None) == "otto:pw"
    assert access.credentials_from_request("Basic " + base64.b64encode(b"otto:pw").decode(), None) == "otto:pw"
    assert access.credentials_from_request(None, "otto:pw") == "otto:pw"
    assert access.credentials_from_request(None, None) is None
    with pytest.raises(AuthError):
        access.credentials_from_request("Digest x", None)


def test_origin_policy() -> None:
    same = OriginPolicy([])
    assert same.check(None, "127.0.0.1:9090")  # non-browser client
    assert same.check("http://127.0.0.1:9090", "127.0.0.1:9090")
    assert not same.check("http://evil.example", "127.0.0.1:9090")
    listed = OriginPolicy(["http://127.0.0.1:8000/"])
    assert listed.check("http://127.0.0.1:8000", "127.0.0.1:9090")
    assert OriginPolicy(["*"]).check("http://anything", "h")
    # DNS rebinding: Origin equal to Host is not enough, the host must be an allowed one
    assert not same.check("http://attacker.example:9090", "attacker.example:9090")
    site = OriginPolicy([], HostPolicy(["robot1.site.example"]))
    assert site.check("http://robot1.site.example:9090", "robot1.site.example:9090")


def test_host_policy() -> None:
    hosts = HostPolicy([], "127.0.0.1")
    assert all(hosts.allows(h) for h in ("localhost:9090", "127.0.0.1", "[::1]:9090", "LOCALHOST"))
    assert not hosts.allows("attacker.example:9090") and not hosts.allows(None) and not hosts.allows("")
    assert not hosts.allows("127.0.0.1.attacker.example")
    site = HostPolicy(["panel.site.example"], "10.1.2.3")
    assert site.allows("panel.site.example:9090") and site.allows("10.1.2.3:9090")
    assert not HostPolicy([], "0.0.0.0").allows("0.0.0.0:9090")
    assert HostPolicy(["*"]).allows("anything")


# ---------------------------------------------------------------------------------------- gateway
class FakeNats:
    """Records publishes; requests answered by a canned reply (unit test of pure logic)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.reply: Any = ({}, msgpack.packb({"success": True, "message": "ok"}))

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.published.append((subject, body, headers))

    def request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float, reply: Any) -> None:
        self.published.append((subject, body, headers))
        reply(self.reply, "" if self.reply else "no service answers")

    def on(self, prefix: str) -> list[tuple[str, bytes, dict[str, str]]]:
        return [p for p in self.published if p[0].startswith(prefix)]


@pytest.fixture
def gateway(users_file: Path) -> tuple[Gateway, FakeNats]:
    nats = FakeNats()
    ac = AccessControl.from_file(users_file)
    hub = Hub(lambda s, on: None, 1 << 20)
    auditor = Auditor("r1", nats.publish, logging.getLogger("test"))
    gw = Gateway(TopicMapper(Mode.ROBOT, "r1"), ac, hub, nats, auditor, Codec(TypeRegistry()), "r1",
                 GatewayLimits(max_frame_bytes=4096, max_client_msgs_per_s=0))  # fmt: skip
    return gw, nats


def replies(session: ClientSession) -> list[dict]:
    return [json.loads(f) for f in session.render(session.take(0) or [])]


TWIST = {"linear": {"x": 0.5, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.1}}


def test_operator_publish_reaches_nats_with_envelope_and_audit(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    s = gw.open(gw.access.authenticate("otto", "operator-pw"), "127.0.0.1:1")
    gw.handle(s, json.dumps({"op": "advertise", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist"}))
    gw.handle(s, json.dumps({"op": "publish", "topic": "/cmd_vel", "msg": TWIST}))
    assert replies(s) == []
    ((subject, body, headers),) = nats.on("robots.")
    assert subject == "robots.r1.cmd.cmd_vel"
    assert headers["Ros-Type"] == "geometry_msgs/msg/Twist" and headers["Rp-User"] == "otto"
    assert msgpack.unpackb(body)["linear"]["x"] == 0.5
    ((_, audit_body, _),) = nats.on("audit.r1")
    event = msgpack.unpackb(audit_body)
    assert (event["user"], event["op"], event["target"], event["allowed"]) == ("otto", "publish", "/cmd_vel", True)
    assert "operator-pw" not in json.dumps(event)


def test_viewer_publish_is_refused_audited_and_connection_goes_on(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    s = gw.open(gw.access.authenticate("vera", "viewer-pw"), "127.0.0.1:2")
    gw.handle(s, json.dumps({"op": "publish", "id": "p1", "topic": "/cmd_vel", "msg": TWIST,
                             "type": "geometry_msgs/msg/Twist"}))  # fmt: skip
    (status,) = replies(s)
    assert status["op"] == "status" and status["level"] == "error" and status["id"] == "p1"
    assert "may not publish" in status["msg"]
    assert nats.on("robots.") == []
    assert msgpack.unpackb(nats.on("audit.r1")[0][1])["allowed"] is False
    assert gw.handle(s, json.dumps({"op": "subscribe", "topic": "/odom"})) is True
    assert replies(s) == []


@pytest.mark.parametrize(
    ("frame", "expect"),
    [
        ("{not json", "not valid JSON"),
        ('{"op": "fly"}', "unknown op"),
        ('{"op": "subscribe", "topic": 3}', "must be a string"),
        ('{"op": "subscribe", "topic": "/robots/r2/odom"}', "serves robot 'r1' only"),
        ('{"op": "publish", "topic": "/cmd_vel", "msg": {}}', "advertise the topic"),
        ('{"op": "publish", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist", "msg": {"linear": 1}}', "linear"),
        ('{"op": "publish", "topic": "/cmd_vel", "type": "no_pkg/msg/Nope", "msg": {}}', "unknown ROS message type"),
        ('{"op": "advertise", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Nope"}', "unknown ROS message type"),
        ("x" * 5000, "exceeds the limit"),
    ],
)
def test_bad_inputs_answer_one_status(gateway: tuple[Gateway, FakeNats], frame: str, expect: str) -> None:
    gw, nats = gateway
    s = gw.open(gw.access.authenticate("otto", "operator-pw"), "c")
    assert gw.handle(s, frame) is True
    (status,) = replies(s)
    assert status["op"] == "status" and expect in status["msg"]
    assert nats.on("robots.") == []


def test_call_service_and_errors(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    s = gw.open(gw.access.authenticate("otto", "operator-pw"), "c")
    gw.handle(s, json.dumps({"op": "call_service", "id": "c1", "service": "/robot_sim/estop",
                             "type": "std_srvs/srv/SetBool", "args": {"data": True}}))  # fmt: skip
    (resp,) = replies(s)
    assert resp == {"op": "service_response", "id": "c1", "service": "/robot_sim/estop",
                    "values": {"success": True, "message": "ok"}, "result": True}  # fmt: skip
    assert nats.on("robots.r1.srv.robot_sim.estop")
    nats.reply = None
    gw.handle(s, json.dumps({"op": "call_service", "id": "c2", "service": "/robot_sim/pause", "args": {}}))
    (resp,) = replies(s)
    assert resp["result"] is False and "no service" in resp["values"]
    gw.handle(s, json.dumps({"op": "call_service", "id": "c3", "service": "/deploy_service/deploy", "args": {}}))
    (status,) = replies(s)
    assert status["op"] == "status" and "may not call" in status["msg"]


def test_auth_op_then_limits_failed_attempts(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, _ = gateway
    s = gw.open(None, "c")
    gw.handle(s, json.dumps({"op": "subscribe", "topic": "/odom"}))
    assert "authenticate first" in replies(s)[0]["msg"]
    assert gw.handle(s, json.dumps({"op": "auth", "user": "otto", "secret": "nope"})) is True
    assert gw.handle(s, json.dumps({"op": "auth", "user": "otto", "secret": "nope"})) is True
    assert gw.handle(s, json.dumps({"op": "auth", "user": "otto", "secret": "nope"})) is False  # 3rd: close
    s2 = gw.open(None, "c")
    assert gw.handle(s2, json.dumps({"op": "auth", "client": "vera", "mac": "viewer-pw"})) is True
    assert s2.principal.role.name == "viewer"
    for r in replies(s) + replies(s2):
        assert "nope" not in r.get("msg", "") and "viewer-pw" not in r.get("msg", "")


def test_uint8_arrays_as_base64_like_rosbridge(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    s = gw.open(gw.access.authenticate("ada", "admin-pw"), "c")
    image = {"height": 1, "width": 3, "encoding": "mono8", "step": 3, "data": "AAH/"}  # bytes 00 01 ff
    gw.handle(s, json.dumps({"op": "publish", "topic": "/image", "type": "sensor_msgs/msg/Image", "msg": image}))
    assert replies(s) == []
    ((_, body, _),) = nats.on("robots.r1.cmd.image")
    assert msgpack.unpackb(body)["data"] == b"\x00\x01\xff"
    image["data"] = "not base64!"
    gw.handle(s, json.dumps({"op": "publish", "topic": "/image", "type": "sensor_msgs/msg/Image", "msg": image}))
    assert "data: not valid base64" in replies(s)[0]["msg"]
