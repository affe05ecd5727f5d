"""Site certificates: no client certificate may be named like another one's MQTT client id."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_platform.exceptions import ConfigError
from robot_platform.site_setup import certs


def test_client_certificates_cannot_take_a_client_id_prefix(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    for name in ("deploy-r1", "health-r2"):
        with pytest.raises(ConfigError, match="client ids"):
            certs.issue_robot(tmp_path, name)
        with pytest.raises(ConfigError, match="client ids"):
            certs.issue(tmp_path, name, name, server=False)
    assert certs.issue_robot(tmp_path, "r1")["created"] == "true"
    assert certs.issue(tmp_path, "jobs-service", "jobs-service", server=False)["created"] == "true"
