"""One source of defaults: every node's parameter table against the shipped YAML and the README.

The tables (``TABLE`` next to each node) are the defaults a bare ``ros2 run`` gets; config/robot.yaml
and config/control.yaml repeat them for operators. These tests fail when the two disagree in type or
value (apart from what the table itself marks: ``site`` values, the ``control`` role's values and
per-route groups), when a YAML key names no parameter, and when the README's parameter lists name a
parameter that does not exist or state a default that is not the table's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from robot_platform.bridge.node_params import TABLE as BRIDGE
from robot_platform.common.params import REQUIRED, Param, ParamTable
from robot_platform.deploy.node_params import TABLE as DEPLOY
from robot_platform.frames.node import TABLE as FRAMES
from robot_platform.health.node_params import TABLE as HEALTH
from robot_platform.jobs.node import TABLE as JOBS
from robot_platform.ops.node import TABLE as ROBOT_AGENT
from robot_platform.ops.registry_node import TABLE as REGISTRY
from robot_platform.sim.node import TABLE as SIM
from robot_platform.ws.node import TABLE as WS

ROOT = Path(__file__).resolve().parents[3]
TABLES: dict[str, ParamTable] = {
    t.node: t for t in (BRIDGE, DEPLOY, FRAMES, HEALTH, JOBS, ROBOT_AGENT, REGISTRY, SIM, WS)
}
YAML_FILES = {"robot.yaml": "robot", "control.yaml": "control"}


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _shipped() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, node, flat parameters) of every node block of the shipped YAML files."""
    blocks = []
    for file in YAML_FILES:
        doc = yaml.safe_load((ROOT / "config" / file).read_text(encoding="utf-8"))
        for key, block in doc.items():
            blocks.append((file, key.rsplit("/", 1)[-1], _flatten(block["ros__parameters"])))
    return blocks


def _type_ok(param: Param, value: Any) -> bool:
    if param.type is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return type(value) is param.type  # bool is not int, 5 is not 5.0: ROS refuses both


def _same(param: Param, value: Any, expected: Any) -> bool:
    if param.type is list:
        return [v for v in value if v] == [v for v in expected if v]
    return value == expected


def _group_param(table: ParamTable, flat: dict[str, Any], key: str) -> Param | None:
    """The group entry ``key`` is (``out.odom.topic`` -> OUT_PARAMS' topic, odom in out.names), or None."""
    for group, params in table.groups.items():
        if not key.startswith(f"{group}."):
            continue
        name, _, rest = key[len(group) + 1 :].partition(".")
        names = [n for n in flat.get(f"{group}.names", []) if n]
        for param in params:
            if rest == param.name and name in names:
                return param
    return None


@pytest.mark.parametrize(("file", "node", "flat"), _shipped(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_shipped_yaml_agrees_with_the_table(file: str, node: str, flat: dict[str, Any]) -> None:
    table = TABLES[node]
    params = table.by_name()
    role = YAML_FILES[file]
    problems = []
    for key, value in flat.items():
        param = params.get(key)
        if param is None:
            group = _group_param(table, flat, key)
            if group is None:
                problems.append(f"{key}: no such parameter")
            elif not _type_ok(group, value):
                problems.append(f"{key}: {value!r} is not a {group.type.__name__}")
            continue
        if not _type_ok(param, value):
            problems.append(f"{key}: {value!r} is not a {param.type.__name__}")
            continue
        if param.required or param.site:
            continue
        expected = param.control if role == "control" and param.control is not None else param.default
        if not _same(param, value, expected):
            problems.append(f"{key}: {value!r} in the YAML, {expected!r} in the table")
    if role == "control":  # the control role's values must be in control.yaml, which is where they act
        problems += [f"{p.name}: control value {p.control!r} missing" for p in table.params
                     if p.control is not None and p.name not in flat]  # fmt: skip
    assert not problems, f"config/{file} {node}: " + "; ".join(problems)


def test_every_table_is_well_formed() -> None:
    for table in TABLES.values():
        names = [p.name for p in table.params]
        assert len(names) == len(set(names)), f"{table.node}: a parameter declared twice"
        for param in table.params + tuple(p for g in table.groups.values() for p in g):
            assert param.description, f"{table.node}.{param.name}: no description"
            if param.control is not None:
                assert type(param.control) is type(param.default), f"{table.node}.{param.name}: control value type"


def test_robot_id_has_no_default_anywhere() -> None:
    """A robot without configuration must not claim to be r1 (issue 16)."""
    for table in TABLES.values():
        robot_id = table.by_name().get("robot_id")
        if robot_id is not None:
            assert robot_id.default is REQUIRED, table.node


# ------------------------------------------------------------------ README
SECTION = re.compile(r"^### (\w+)", re.MULTILINE)
PARAGRAPH = re.compile(r"^Parameters \(.*?(?=\n\n)", re.MULTILINE | re.DOTALL)
NOT_PARAMETERS = {"robot", "control", "not_allowed"}  # a mode's and a counter's name in those paragraphs
NAME = re.compile(r"^[a-z][a-z0-9_]*(?:\.(?:[a-z0-9_]+|<n>|\{[a-z0-9_,.]+\}))*(?:_\{[a-z0-9_,]+\}|_\*)?$")


def _expand(token: str) -> list[str]:
    """``out.<n>.{topic,type}`` -> out.<n>.topic, out.<n>.type; ``a_{b,c}`` -> a_b, a_c."""
    match = re.search(r"\{([^}]*)\}", token)
    if match is None:
        return [token]
    return [n for part in match.group(1).split(",") if part != "..."
            for n in _expand(token[: match.start()] + part + token[match.end() :])]  # fmt: skip


def _exists(table: ParamTable, name: str) -> bool:
    if name.endswith("_*"):
        return any(p.name.startswith(name[:-1]) for p in table.params)
    if name in table.by_name():
        return True
    group, _, rest = name.partition(".<n>.")
    return rest in {p.name for p in table.groups.get(group, ())}


def _readme_parameter_lists() -> list[tuple[str, str]]:
    """(node, name) for every backticked name in the README's 'Parameters (...)' paragraphs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    sections = list(SECTION.finditer(text))
    for i, section in enumerate(sections):
        node = section.group(1)
        body = text[section.end() : sections[i + 1].start() if i + 1 < len(sections) else len(text)]
        for paragraph in PARAGRAPH.findall(body):
            for token in re.findall(r"`([^`]+)`", paragraph):
                if NAME.match(token) and token not in NOT_PARAMETERS:
                    found += [(node, name) for name in _expand(token)]
    return found


def test_readme_parameter_lists_name_real_parameters() -> None:
    found = _readme_parameter_lists()
    assert len(found) > 60, "the README's parameter lists were not found"
    missing = [f"{node}: {name}" for node, name in found if node in TABLES and not _exists(TABLES[node], name)]
    assert not missing, f"README names parameters that do not exist: {missing}"


def test_readme_defaults_are_the_tables() -> None:
    """'`name`, default V' and '`name: V`' where the README says a default or what a YAML ships."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    params: dict[str, list[Param]] = {}
    for table in TABLES.values():
        for param in table.params:
            params.setdefault(param.name, []).append(param)
    patterns = (
        r"`([a-z_.]+)`, default ([0-9.]+)",  # (`mirror.max_robots`, default 256: ...)
        r"\(`([a-z_.]+): ([^`]*)` in config/",  # (`anonymous_role: ""` in config/robot.yaml ...)
        r"ships [^(`]*\(`([a-z_.]+): ([^`]*)`\)",  # ships the jobs service API-only (`mqtt_endpoint: ""`)
    )
    stated = [(m.group(1), m.group(2)) for pattern in patterns for m in re.finditer(pattern, text)]
    assert stated, "no default stated in the README was found"
    wrong = []
    for name, literal in stated:
        value = yaml.safe_load(literal)
        candidates = params.get(name, [])  # not a parameter (a checks.yaml key such as flap_window_s): skip
        if candidates and not any(value in (p.default, p.control) for p in candidates):
            wrong.append(f"{name}: README {value!r}, tables {[p.default for p in candidates]}")
    assert not wrong, wrong
