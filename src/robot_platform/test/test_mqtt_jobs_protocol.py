"""mqtt.jobs_protocol: the IoT Jobs topics and payload rules both the robot and the jobs service use."""

from __future__ import annotations

import pytest

from robot_platform.mqtt import jobs_protocol as p
from robot_platform.mqtt.errors import DeviceRequestError


def test_device_topics_parse_back_to_the_request_they_name() -> None:
    cases = {
        p.topic("r1", "get"): p.Request("r1", "get"),
        p.topic("r1", "start-next"): p.Request("r1", "start-next"),
        p.topic("r1", "job-7", "get"): p.Request("r1", "describe", "job-7"),
        p.topic("r1", p.NEXT, "get"): p.Request("r1", "describe", p.NEXT),
        p.topic("r1", "job-7", "update"): p.Request("r1", "update", "job-7"),
    }
    for name, request in cases.items():
        assert name.startswith("$aws/things/r1/jobs/")
        assert p.parse_request_topic(name) == request


def test_replies_go_to_the_accepted_or_rejected_topic_of_the_request() -> None:
    assert p.reply_topic(p.Request("r1", "get"), True) == "$aws/things/r1/jobs/get/accepted"
    assert p.reply_topic(p.Request("r1", "describe", "j"), False) == "$aws/things/r1/jobs/j/get/rejected"
    assert p.reply_topic(p.Request("r1", "update", "j"), True) == "$aws/things/r1/jobs/j/update/accepted"


@pytest.mark.parametrize(
    "name",
    ["robots/r1/alerts", "$aws/things/r1/shadow/get", "$aws/things/r 1/jobs/get",
     "$aws/things/r1/jobs/notify-next", "$aws/things/r1/jobs/$next/update", "$aws/things/r1/jobs/j.1/get"],
)  # fmt: skip
def test_anything_else_is_an_invalid_topic(name: str) -> None:
    with pytest.raises(DeviceRequestError) as err:
        p.parse_request_topic(name)
    assert err.value.code == "InvalidTopic"


def test_payloads_are_json_objects_within_the_aws_size_limit() -> None:
    assert p.decode(b"") == {} and p.decode(b' {"a": 1} ') == {"a": 1}
    assert p.decode(p.encode({"b": 2, "a": 1})) == {"a": 1, "b": 2}
    for payload, code in ((b"[1]", "InvalidJson"), (b"{", "InvalidJson"), (b"\xff", "InvalidJson"),
                          (b" " * (p.MAX_PAYLOAD_BYTES + 1), "InvalidRequest")):  # fmt: skip
        with pytest.raises(DeviceRequestError) as err:
            p.decode(payload)
        assert err.value.code == code


def test_status_details_follow_the_aws_rules() -> None:
    assert p.check_status_details(None) == {} and p.check_status_details({"step": "x"}) == {"step": "x"}
    too_many = {str(i): "v" for i in range(p.MAX_STATUS_DETAILS + 1)}
    for bad in ("x", too_many, {"k": 1}, {"k": "v" * (p.MAX_STATUS_DETAIL_CHARS + 1)}):
        with pytest.raises(DeviceRequestError) as err:
            p.check_status_details(bad)
        assert err.value.code == "InvalidRequest"
    long = p.truncate_detail("e" * 2000)
    assert len(long) == p.MAX_STATUS_DETAIL_CHARS and long.endswith("...")


def test_statuses_a_device_may_set_and_which_end_an_execution() -> None:
    assert {s.value for s in p.DEVICE_SETTABLE} == {"IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"}
    assert not p.ExecStatus.QUEUED.terminal and p.ExecStatus.CANCELED.terminal
    assert p.ExecStatus.TIMED_OUT.failure and not p.ExecStatus.CANCELED.failure
    body = p.rejected_body("InvalidJson", "bad", "tok", 12.7)
    assert body == {"code": "InvalidJson", "message": "bad", "timestamp": 12, "clientToken": "tok"}


def test_the_robot_side_imports_no_control_code() -> None:
    """deploy_service and health_monitor_tree speak IoT Jobs and MQTT through robot_platform.mqtt only."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import robot_platform.deploy.iot_jobs_client, robot_platform.health.mqtt_out\n"
        "assert not [m for m in sys.modules if m.startswith('robot_platform.jobs')], "
        "sorted(m for m in sys.modules if m.startswith('robot_platform.jobs'))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
