"""ServiceRouter: allowlist, request validation, replies, timeouts and busy refusals (no ROS graph).

The ROS side is played by the test: it takes the (call, request) the router hands out and answers with
``complete`` or lets ``expire`` run, exactly like the node's future callback and timer do.
"""

from __future__ import annotations

import msgpack
import pytest
from std_srvs.srv import SetBool

from robot_platform.bridge.services import H_ERROR, OTHER, ServiceAllowlist, ServiceRouter, normalize_service_type
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.errors import SubjectError

ESTOP = "robots.r1.srv.robot_sim.estop"
RULES = [
    ("estop", "/robot_sim/estop", "std_srvs/srv/SetBool", 2.0),
    ("pause", "/robot_sim/pause", "std_srvs/SetBool", 1.0),
]


class Replies(list):
    def __call__(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.append((subject, body, headers))


@pytest.fixture
def replies() -> Replies:
    return Replies()


@pytest.fixture
def router(replies: Replies) -> ServiceRouter:
    return ServiceRouter("r1", Codec(), ServiceAllowlist("r1", RULES), replies, max_pending=2)


def test_allowlist_maps_services_to_subjects() -> None:
    allow = ServiceAllowlist("r1", RULES)
    assert [r.subject for r in allow.rules] == [ESTOP, "robots.r1.srv.robot_sim.pause"]
    assert {r.type_name for r in allow.rules} == {"std_srvs/srv/SetBool"}
    assert normalize_service_type("robot_platform_interfaces/AcknowledgeAlert") == (
        "robot_platform_interfaces/srv/AcknowledgeAlert"
    )
    for bad in ("std_srvs/msg/SetBool", "SetBool", "std_srvs/srv/setBool", ""):
        with pytest.raises(SubjectError):
            normalize_service_type(bad)
    with pytest.raises(SubjectError):
        ServiceAllowlist("r1", [("x", "robot_sim/estop", "std_srvs/srv/SetBool", 1.0)])  # not fully qualified
    with pytest.raises(SubjectError):
        ServiceAllowlist("r1", [RULES[0], ("again", "/robot_sim/estop", "std_srvs/srv/SetBool", 1.0)])
    with pytest.raises(SubjectError):
        ServiceAllowlist("r1", [("x", "/a", "std_srvs/srv/SetBool", 0.0)])


def test_valid_request_is_called_and_answered(router: ServiceRouter, replies: Replies) -> None:
    result = router.on_request(ESTOP, "_INBOX.1", {"Rp-User": "otto"}, msgpack.packb({"data": True}), now=10.0)
    assert result is not None
    call, request = result
    assert isinstance(request, SetBool.Request) and request.data is True
    assert router.pending == 1 and replies == []
    response = SetBool.Response(success=True, message="estopped")
    assert router.complete(call, response)
    (subject, body, headers) = replies[0]
    assert subject == "_INBOX.1"
    assert msgpack.unpackb(body) == {"success": True, "message": "estopped"}
    assert headers["Ros-Type"] == "std_srvs/srv/SetBool" and headers["Content-Type"] == "application/msgpack"
    assert H_ERROR not in headers
    assert router.pending == 0
    assert router.snapshot()["in"][ESTOP]["delivered"] == 1


def test_empty_body_is_a_default_request(router: ServiceRouter) -> None:
    result = router.on_request(ESTOP, "_INBOX.1", None, b"")
    assert result is not None and result[1].data is False


@pytest.mark.parametrize(
    ("subject", "headers", "body", "kind"),
    [
        ("robots.r1.srv.robot_sim.inject_fault", None, msgpack.packb({}), "not_allowed"),
        (ESTOP, {"Ros-Type": "std_srvs/srv/Trigger"}, msgpack.packb({}), "not_allowed"),
        (ESTOP, None, b"\xc1garbage", "malformed"),
        (ESTOP, None, msgpack.packb([1, 2]), "malformed"),
        (ESTOP, None, msgpack.packb({"data": "yes"}), "wrong_type"),
        (ESTOP, None, msgpack.packb({"force": True}), "unknown_field"),
        (ESTOP, None, b"\x80" * 2_000_000, "oversized"),
    ],
)
def test_bad_requests_get_an_error_reply_and_are_counted(
    router: ServiceRouter, replies: Replies, subject: str, headers: dict[str, str] | None, body: bytes, kind: str
) -> None:
    assert router.on_request(subject, "_INBOX.9", headers, body) is None
    (reply_to, data, reply_headers) = replies[0]
    assert reply_to == "_INBOX.9" and data == b""
    assert reply_headers[H_ERROR].startswith(f"{kind}: ")
    assert "\n" not in reply_headers[H_ERROR]
    snap = router.snapshot()
    key = ESTOP if subject == ESTOP else OTHER
    assert snap["in"][key]["errors"] == {kind: 1} and snap["errors"] == {kind: 1}
    assert router.pending == 0


def test_matching_type_header_in_either_spelling_is_accepted(router: ServiceRouter) -> None:
    for type_name in ("std_srvs/srv/SetBool", "std_srvs/SetBool"):
        assert router.on_request(ESTOP, "_INBOX.1", {"Ros-Type": type_name}, b"") is not None


def test_request_without_reply_subject_is_refused(router: ServiceRouter, replies: Replies) -> None:
    assert router.on_request(ESTOP, "", None, msgpack.packb({"data": True})) is None
    assert replies == [] and router.snapshot()["errors"] == {"no_reply": 1}


def test_timeout_answers_once_and_drops_the_late_response(router: ServiceRouter, replies: Replies) -> None:
    call, _ = router.on_request(ESTOP, "_INBOX.1", None, b"", now=100.0)
    assert router.expire(now=101.9) == []
    assert [c.call_id for c in router.expire(now=102.0)] == [call.call_id]
    assert replies[0][2][H_ERROR].startswith("timeout: ") and "within 2s" in replies[0][2][H_ERROR]
    assert not router.complete(call, SetBool.Response(success=True))  # too late: not answered twice
    assert len(replies) == 1


def test_busy_beyond_max_pending_and_unavailable(router: ServiceRouter, replies: Replies) -> None:
    first, _ = router.on_request(ESTOP, "_INBOX.1", None, b"")
    router.on_request(ESTOP, "_INBOX.2", None, b"")
    assert router.on_request(ESTOP, "_INBOX.3", None, b"") is None
    assert replies[-1][0] == "_INBOX.3" and replies[-1][2][H_ERROR].startswith("busy: ")
    router.fail(first, "unavailable", "no server for /robot_sim/estop is running")
    assert replies[-1][0] == "_INBOX.1" and "no server" in replies[-1][2][H_ERROR]
    assert router.pending == 1
    router.fail_all("stopping")
    assert replies[-1][0] == "_INBOX.2" and router.pending == 0


def test_non_finite_request_refused_unless_the_service_opts_in(replies: Replies) -> None:
    """A NaN in a service Request is a command into ROS too: refused (out_of_range) by default."""
    rules = [
        ("strict", "/strict/set_parameters", "rcl_interfaces/srv/SetParameters", 1.0),
        ("lax", "/lax/set_parameters", "rcl_interfaces/srv/SetParameters", 1.0, True),
    ]
    router = ServiceRouter("r1", Codec(), ServiceAllowlist("r1", rules), replies, max_pending=4)
    body = msgpack.packb({"parameters": [{"name": "gain", "value": {"type": 3, "double_value": float("nan")}}]})
    assert router.on_request("robots.r1.srv.strict.set_parameters", "_INBOX.1", {}, body, now=0.0) is None
    (_subject, _body, headers) = replies[0]
    assert "out_of_range" in headers[H_ERROR] and "parameters[0].value.double_value" in headers[H_ERROR]
    assert router.snapshot()["errors"] == {"out_of_range": 1}
    result = router.on_request("robots.r1.srv.lax.set_parameters", "_INBOX.2", {}, body, now=0.0)
    assert result is not None and result[1].parameters[0].value.double_value != 0.0
