"""The platform's interfaces import, carry their constants and have the documented defaults."""

import math

from robot_platform_interfaces.msg import Alert, DeploymentStatus, InstalledPackage, RobotState
from robot_platform_interfaces.srv import AcknowledgeAlert, Deploy, InjectFault, InvokeFunction, ListPackages, Rollback


def test_alert_severities_and_defaults() -> None:
    assert (Alert.SEVERITY_INFO, Alert.SEVERITY_WARN, Alert.SEVERITY_ERROR, Alert.SEVERITY_CRITICAL) == (0, 1, 2, 3)
    alert = Alert()
    assert alert.active is True and alert.acknowledged is False and alert.severity == Alert.SEVERITY_INFO
    assert list(alert.values) == [] and alert.stamp.sec == 0


def test_deployment_states_match_aws_iot_jobs() -> None:
    states = {name[len("STATE_"):]: getattr(DeploymentStatus, name)
              for name in dir(DeploymentStatus) if name.startswith("STATE_") and not name.endswith("__DEFAULT")}
    assert set(states) == {"QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED"}
    assert len(set(states.values())) == len(states)
    status = DeploymentStatus()
    assert status.state == DeploymentStatus.STATE_QUEUED and status.progress == 0.0
    assert DeploymentStatus.STEP_HEALTH_CHECK == "health_check"


def test_deploy_service_shape() -> None:
    req = Deploy.Request(job_id="j1", package_name="nav_app", version="1.0.0",
                         artifact_uri="s3://packages/nav_app/1.0.0.tar.gz", sha256="0" * 64,
                         signature="", kind=Deploy.Request.KIND_APP)
    assert req.kind == "app" and Deploy.Request.KIND_FUNCTION == "function"
    res = Deploy.Response()
    assert res.accepted is False and res.state == 0
    assert Rollback.Request().to_version == "" and Rollback.Response().success is False
    invoke = InvokeFunction.Request(package_name="hello_fn", event_json='{"n": 1}')
    assert invoke.invocation_id == "" and InvokeFunction.Response().ok is False
    assert InvokeFunction.Response().duration_s == 0.0


def test_fleet_and_package_messages() -> None:
    state = RobotState()
    assert state.mode == RobotState.MODE_UNKNOWN and RobotState.MODE_ESTOP == 4
    state.battery_percentage = math.nan
    assert math.isnan(state.battery_percentage)
    assert InstalledPackage.KIND_APP == "app"
    assert list(ListPackages.Response().packages) == []
    assert AcknowledgeAlert.Request().alert_id == ""
    assert InjectFault.Request.FAULT_SPEED_CAP == "speed_cap"

