"""Launch arguments keep their declared types and reach the nodes as rcl parses them.

The runner's command lines are handed to rcl's own argument parser (``rclpy.init(args=...)``), the one
every node uses, so a rule rcl cannot parse (``-p users_file:=``) or a value that changes type
(``robot_id:=7`` becoming an integer) fails here, not in a node at start-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_platform.exceptions import ConfigError
from robot_platform.launcher import plan
from robot_platform.launcher.processes import Installation, control_processes, parameter_text, robot_processes

INSTALL = Installation(share=Path("/opt/rp/share/robot_platform"), lib=Path("/opt/rp/lib/robot_platform"))

ROBOT_DEFAULTS = plan.defaults(plan.ROBOT_ARGUMENTS) | {"robot_id": "r1"}  # robot_id: required

def _overrides_as_rcl_reads_them(argv: list[str]) -> dict[str, object]:
    """The parameter overrides rcl parses from a node's argv (no node, no graph)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, args=argv)  # raises on a rule rcl cannot parse
    try:
        node = rclpy.create_node("probe", context=context, start_parameter_services=False, enable_rosout=False,
                                 automatically_declare_parameters_from_overrides=True)  # fmt: skip
        try:
            return {name: p.value for name, p in node.get_parameters_by_prefix("").items()}
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def _rcl_args(argv: list[str]) -> list[str]:
    """A node's argv without its --params-file (the test has no installed YAML at /opt/rp)."""
    out = list(argv)
    i = out.index("--params-file")
    del out[i : i + 2]
    return out


def test_a_numeric_robot_id_stays_a_string(ros_domain: int) -> None:
    specs = {s.name: s for s in robot_processes(ROBOT_DEFAULTS | {"robot_id": "7"},
                                                INSTALL)}  # fmt: skip
    assert plan.node_overrides(plan.ROBOT_NODES[0], {"robot_id": "7", "enable_camera": "false"}) == {
        "robot_id": "7",
        "enable_camera": False,
    }
    params = _overrides_as_rcl_reads_them(_rcl_args(specs["7/robot_sim"].argv))
    assert params["robot_id"] == "7" and params["enable_camera"] is False


def test_empty_string_arguments_are_valid_parameter_rules(ros_domain: int) -> None:
    """The default users_file (empty) used to give `-p users_file:=`, which rcl refuses (ws_agent died).
    Checked in the split layout, where ws_agent gets its parameters on its own command line (the single
    layout passes them in a params file: test_agent_one_process.py)."""
    for specs in (
        robot_processes(ROBOT_DEFAULTS | {"agent_layout": "split"}, INSTALL),
        control_processes(plan.defaults(plan.CONTROL_ARGUMENTS), INSTALL),
    ):
        ws = next(s for s in specs if s.name.endswith("/ws_agent"))
        params = _overrides_as_rcl_reads_them(_rcl_args(ws.argv))
        assert params["users_file"] == "" and isinstance(params["port"], int)


def test_control_metrics_ports_are_arguments() -> None:
    values = plan.defaults(plan.CONTROL_ARGUMENTS) | {
        "bridge_metrics_port": "19202",
        "jobs_metrics_port": "19203",
    }
    specs = {s.name: s.argv for s in control_processes(values, INSTALL)}
    assert "metrics_port:=19202" in specs["control/nats_bridge"]
    assert "metrics_port:=19203" in specs["control/jobs_service"]


def test_every_port_a_node_opens_is_an_argument() -> None:
    """Each node parameter named *port in the shipped YAML is set from a launch argument (or is not
    a listening port: mqtt/bastion/ssh ports are ones the node connects to)."""
    import yaml

    repo = Path(__file__).resolve().parents[3]
    connects_to = {"mqtt_port", "bastion_port", "remote_port", "local_ssh_port"}
    for config, nodes in (("robot.yaml", plan.ROBOT_NODES), ("control.yaml", plan.CONTROL_NODES)):
        body = yaml.safe_load((repo / "config" / config).read_text())
        for spec in nodes:
            params = body.get(f"/**/{spec.name}", {}).get("ros__parameters", {})
            ports = {k for k in params if k.endswith("port")} - connects_to
            assert ports <= set(spec.overrides), (config, spec.name, ports - set(spec.overrides))


def test_robot_and_control_on_one_host_with_the_documented_overrides() -> None:
    """README: `robot-platform robot --nats-port 4231 --nats-monitor-port 8231` next to `control`."""
    robot = ROBOT_DEFAULTS | {"nats_port": "4231", "nats_monitor_port": "8231"}
    control = plan.defaults(plan.CONTROL_ARGUMENTS)
    robot_ports = {robot[a.name] for a in plan.ROBOT_ARGUMENTS if a.name.endswith("port")}
    control_ports = {control[a.name] for a in plan.CONTROL_ARGUMENTS if a.name.endswith("port")}
    assert not robot_ports & control_ports, robot_ports & control_ports


@pytest.mark.parametrize(
    ("name", "value"),
    [("nats_port", "abc"), ("use_sim", "maybe"), ("log_level", "loud"), ("params_file", "/nonexistent/robot.yaml")],
)
def test_bad_values_are_refused_naming_the_argument(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        robot_processes(ROBOT_DEFAULTS | {name: value}, INSTALL)


def test_params_file_log_level_namespace_and_respawn(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("{}\n")
    values = ROBOT_DEFAULTS | {
        "params_file": str(site),
        "log_level": "DEBUG",
        "namespace": "site_a",
        "use_respawn": "true",
    }
    specs = {s.name: s for s in robot_processes(values, INSTALL)}
    argv = specs["r1/robot_sim"].argv
    assert argv[argv.index("--params-file") + 1] == str(site)
    assert argv[argv.index("--log-level") + 1] == "debug"
    assert "__ns:=/site_a" in argv
    assert specs["r1/robot_sim"].respawn and not specs["r1/nats-server"].respawn
    assert not any(s.respawn for s in robot_processes(ROBOT_DEFAULTS, INSTALL))


def test_parameter_text_is_yaml_of_the_declared_type() -> None:
    assert parameter_text("") == '""' and parameter_text("7") == '"7"' and parameter_text(7) == "7"
    assert parameter_text(True) == "true" and parameter_text(["r1", "2"]) == '["r1","2"]'


def test_robot_id_has_no_default() -> None:
    """A robot started without --robot-id / robot_id:= must not run as r1 (issue 16)."""
    assert "robot_id" not in plan.defaults(plan.ROBOT_ARGUMENTS)
    with pytest.raises(ConfigError, match="robot_id is required"):
        robot_processes(plan.defaults(plan.ROBOT_ARGUMENTS), INSTALL)
