"""Typed errors of the shared MQTT / IoT Jobs layer (used by the robot and the control side alike).

Why here and not in ``jobs/errors.py``: the device side (deploy_service) parses the same Jobs payloads
as the server and must not import control code to name the error it catches.
"""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class MqttError(RobotPlatformError):
    """Base class of the MQTT layer's errors. ``reason`` is operator-facing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeviceRequestError(MqttError):
    """A message on a Jobs topic is invalid (bad JSON, bad field, bad state transition).

    Attributes:
        code: the AWS IoT Jobs error code answered on ``.../rejected``: ``InvalidJson``,
            ``InvalidRequest``, ``InvalidTopic``, ``InvalidStateTransition``, ``VersionMismatch``,
            ``ResourceNotFound``...
        execution_state: the execution's current state for ``InvalidStateTransition`` / ``VersionMismatch``.
    """

    def __init__(self, code: str, reason: str, execution_state: dict[str, object] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.execution_state = execution_state
