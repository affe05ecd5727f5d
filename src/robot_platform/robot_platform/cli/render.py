"""Human rendering of message dicts, shaped like ``ros2 topic echo`` (block YAML, ``---`` between).

Same truncation rules as ``ros2 topic echo``'s ``--truncate-length`` (default 128): long strings and
arrays are cut and end with ``...``; ``no_arr`` replaces arrays by ``'<sequence type: ..., length: N>'``.
Bytes (``uint8[]``) print as lists of integers, as rclpy's ``array('B')`` does in ``ros2 topic echo``.
"""

from __future__ import annotations

from typing import Any

import yaml

DEFAULT_TRUNCATE_LENGTH = 128
SEPARATOR = "---"


def _prepare(value: Any, truncate: int | None, no_arr: bool) -> Any:
    if isinstance(value, dict):
        return {k: _prepare(v, truncate, no_arr) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        if no_arr:
            return f"<sequence type: uint8, length: {len(value)}>"
        value = list(value)
    if isinstance(value, list):
        if no_arr:
            return f"<sequence length: {len(value)}>"
        if truncate is not None and len(value) > truncate:
            return [_prepare(v, truncate, no_arr) for v in value[:truncate]] + ["..."]
        return [_prepare(v, truncate, no_arr) for v in value]
    if isinstance(value, str) and truncate is not None and len(value) > truncate:
        return value[:truncate] + "..."
    return value


def to_yaml(data: dict[str, Any], truncate_length: int | None = DEFAULT_TRUNCATE_LENGTH, no_arr: bool = False) -> str:
    """Block-style YAML of a message dict followed by the ``---`` separator line."""
    text = yaml.safe_dump(
        _prepare(data, truncate_length, no_arr),
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=10**9,
    )
    return f"{text}{SEPARATOR}\n"
