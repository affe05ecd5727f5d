"""Every node's parameters as one typed table, declared through one function.

Why a table: a node's parameters are its interface. Written as data (name, type, default, description,
range, read-only) they read in one place, every one gets a full :class:`ParameterDescriptor`, and a test
can hold the table against the shipped YAML (config/robot.yaml, config/control.yaml) and the README, so
defaults cannot drift apart again (test_param_tables.py).

Types are the Python types of the values: ``str``, ``int``, ``float``, ``bool`` and ``list`` (a string
array). A string array's default is a tuple; YAML writes an empty array as ``[""]`` (ROS cannot type
``[]``), so empty strings are dropped from arrays. :data:`REQUIRED` as a default means "no default":
the node refuses to start without a value (``robot_id``: a robot without configuration must not claim
to be somebody else).

Groups: parameters repeated per name of a list (``out.<n>.topic`` for each ``n`` of ``out.names``) are a
table of their own declared with a ``prefix``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from robot_platform.exceptions import MissingParameterError, ParameterError


class _Required:
    """The default of a parameter that has none (see :data:`REQUIRED`)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

ROS_TYPES: dict[type, int] = {
    str: ParameterType.PARAMETER_STRING,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    bool: ParameterType.PARAMETER_BOOL,
    list: ParameterType.PARAMETER_STRING_ARRAY,
}
UNSET_TYPES: dict[type, Parameter.Type] = {
    str: Parameter.Type.STRING,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    bool: Parameter.Type.BOOL,
    list: Parameter.Type.STRING_ARRAY,
}
HINTS: dict[str, str] = {
    "robot_id": "set -p robot_id:=<id> or robot_id in the robot's YAML",
}


@dataclass(frozen=True)
class Param:
    """One ROS parameter: its type, default (or :data:`REQUIRED`), description and limits.

    ``range`` is (lowest, highest), inclusive, for ``int`` and ``float``. ``read_only`` is the common
    case: most settings build something once at start (restart the node to change them). ``site`` marks
    a value no default fits (the topics to capture, the capabilities announced, a site name): the
    shipped YAML holds the demo site's value, the default is the neutral one a bare ``ros2 run`` gets.
    ``control`` is the value config/control.yaml gives where the control server's role needs another
    (ws_agent serves 100 console clients, a robot's touch panel 20); None: the default serves both.
    """

    name: str
    type: type
    default: Any
    description: str
    range: tuple[float, float] | None = None
    read_only: bool = True
    site: bool = False
    control: Any = None

    def __post_init__(self) -> None:
        if self.type not in ROS_TYPES:
            raise TypeError(f"parameter {self.name}: unsupported type {self.type!r}")
        if self.default is REQUIRED:
            return
        expected = tuple if self.type is list else self.type
        if type(self.default) is not expected or (
            self.type is list and not all(isinstance(v, str) for v in self.default)
        ):
            raise TypeError(f"parameter {self.name}: default {self.default!r} is not a {self.type.__name__}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def descriptor(self, name: str) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(
            name=name, type=ROS_TYPES[self.type], description=self.description, read_only=self.read_only
        )
        if self.range is not None:
            low, high = self.range
            if self.type is int:
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
            elif self.type is float:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
                ]
        return descriptor


class Params(Mapping[str, Any]):
    """The declared values, by the table's names (without the group prefix)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def declare_params(node: Node, table: Iterable[Param], prefix: str = "") -> Params:
    """Declare every parameter of ``table`` on ``node`` (as ``prefix.name``) and return the values.

    Raises :class:`MissingParameterError` for a :data:`REQUIRED` parameter left unset (or empty), and
    :class:`ParameterError` for a value of the wrong type or outside its range, so the node exits with one
    line saying which parameter (see common/node_main.py).
    """
    values: dict[str, Any] = {}
    for param in table:
        full = f"{prefix}.{param.name}" if prefix else param.name
        values[param.name] = _declare(node, param, full)
    return Params(values)


def _declare(node: Node, param: Param, name: str) -> Any:
    if param.required or (param.type is list and not param.default):
        default: Any = UNSET_TYPES[param.type]  # typed but unset: ROS cannot type an empty list
    else:
        default = list(param.default) if param.type is list else param.default
    try:
        value = node.declare_parameter(name, default, param.descriptor(name)).value
    except InvalidParameterTypeException as exc:
        raise ParameterError(name, f"must be a {param.type.__name__} ({exc.args[0]})") from None
    except InvalidParameterValueException as exc:
        raise ParameterError(name, f"must be within {param.range} ({exc.args[0]})") from None
    if param.type is list:
        value = [v for v in (value or []) if v]
    if param.required and value in (None, "", []):
        raise MissingParameterError(name, HINTS.get(name, f"set -p {name}:=<value> or {name} in the YAML"))
    return value


@dataclass(frozen=True)
class ParamTable:
    """A node's whole parameter interface, for the checks against the YAML and the README.

    ``params``: every parameter of a fixed name (of every mode). ``groups``: parameters repeated per
    name of a list, e.g. ``{"out": OUT_ROUTE}`` for ``out.<n>.<param>`` with each ``n`` of ``out.names``.
    """

    node: str
    params: tuple[Param, ...]
    groups: Mapping[str, tuple[Param, ...]] = field(default_factory=dict)

    def by_name(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}


def prefixed(prefix: str, table: Iterable[Param]) -> tuple[Param, ...]:
    """``table`` with every name under ``prefix`` (for a :class:`ParamTable` of a fixed group)."""
    return tuple(replace(p, name=f"{prefix}.{p.name}") for p in table)
