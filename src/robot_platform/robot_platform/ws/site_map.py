"""The site map the operator console draws: every robot on one frame of the site, and a floor plan.

A robot's odometry starts wherever the robot was switched on, so the console needs to know where each
robot's ``odom`` frame sits on the site, exactly what nats_bridge's ``mirror.origins`` tells RViz. The
control server's ws_agent reads one file (parameter ``site_map_file``, YAML or JSON)::

    name: Hall A
    origins: "r1:0,0,0; r2:5,0,1.57"     # as mirror.origins (x, y in m, yaw in rad); or a mapping
                                         # {r1: [0, 0, 0], r2: [5, 0, 1.57]}
    floor_plan:                          # optional
      image: hall_a.png                  # PNG, JPEG or SVG; relative to this file; at most 8 MB
      resolution: 0.05                   # metres per pixel
      origin: [-2.0, -3.0]               # site x, y of the image's bottom-left corner (map_server style)

and serves it (to any logged-in user, as /whoami) on ``GET /site`` (JSON, the image as a URL) and
``GET /site/floor_plan`` (the image). The file is read once at start: a wrong file stops the agent with
the field at fault rather than showing a wrong map.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robot_platform.bridge.fleet_tf_tree import parse_origins
from robot_platform.ws.errors import WsError

MAX_IMAGE_BYTES = 8 * 1024 * 1024
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
FLOOR_PLAN_PATH = "/site/floor_plan"


class SiteMapError(WsError):
    """The site map file is unusable; names the file and the field."""

    kind = "site_map"

    def __init__(self, path: str, field_name: str, reason: str) -> None:
        super().__init__(f"site map {path}: {field_name}: {reason}")
        self.path, self.field, self.reason = path, field_name, reason


@dataclass(frozen=True)
class FloorPlan:
    image: bytes = field(repr=False)
    content_type: str
    resolution: float  # m per pixel
    origin: tuple[float, float]  # site coordinates of the bottom-left corner


@dataclass(frozen=True)
class SiteMap:
    name: str = ""
    origins: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    floor_plan: FloorPlan | None = None

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /site``."""
        plan = self.floor_plan
        return {
            "name": self.name,
            "origins": {robot: list(pose) for robot, pose in self.origins.items()},
            "floor_plan": None
            if plan is None
            else {"url": FLOOR_PLAN_PATH, "resolution": plan.resolution, "origin": list(plan.origin)},
        }


def _origins(path: str, raw: Any) -> dict[str, tuple[float, float, float]]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            return parse_origins(raw)
        except ValueError as exc:
            raise SiteMapError(path, "origins", str(exc)) from None
    if not isinstance(raw, dict):
        raise SiteMapError(path, "origins", "expected 'r1:x,y,yaw; ...' or a mapping robot -> [x, y, yaw]")
    out = {}
    for robot, pose in raw.items():
        if not isinstance(pose, list | tuple) or len(pose) != 3:
            raise SiteMapError(path, f"origins.{robot}", "expected [x, y, yaw]")
        out[str(robot)] = _finite(path, f"origins.{robot}", pose)
    return out


def _finite(path: str, name: str, values: Any) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise SiteMapError(path, name, "expected numbers") from None
    if not all(math.isfinite(v) for v in out):
        raise SiteMapError(path, name, "expected finite numbers")
    return out


def _floor_plan(path: Path, raw: Any) -> FloorPlan | None:
    if raw is None:
        return None
    where = str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("image"), str):
        raise SiteMapError(where, "floor_plan", "expected {image, resolution, origin: [x, y]}")
    image = Path(raw["image"])
    image = image if image.is_absolute() else path.parent / image
    content_type = IMAGE_TYPES.get(image.suffix.lower())
    if content_type is None:
        raise SiteMapError(where, "floor_plan.image", f"{image.name}: expected one of {', '.join(IMAGE_TYPES)}")
    try:
        size = image.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise SiteMapError(where, "floor_plan.image", f"{size} bytes; at most {MAX_IMAGE_BYTES}")
        data = image.read_bytes()
    except OSError as exc:
        raise SiteMapError(where, "floor_plan.image", f"cannot read {image}: {exc.strerror}") from None
    (resolution,) = _finite(where, "floor_plan.resolution", [raw.get("resolution")])
    if not resolution > 0:
        raise SiteMapError(where, "floor_plan.resolution", "must be > 0 (metres per pixel)")
    origin = _finite(where, "floor_plan.origin", raw.get("origin", [0.0, 0.0]))
    if len(origin) != 2:
        raise SiteMapError(where, "floor_plan.origin", "expected [x, y]")
    return FloorPlan(data, content_type, resolution, (origin[0], origin[1]))


def load_site_map(path_text: str) -> SiteMap:
    """Read and check the file; ``""`` gives an empty map (robots at their own odometry, no plan)."""
    if not path_text:
        return SiteMap()
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteMapError(path_text, "file", exc.strerror or "cannot read") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SiteMapError(path_text, "file", f"not valid YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SiteMapError(path_text, "file", "expected a mapping with name, origins, floor_plan")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise SiteMapError(path_text, "name", "expected text")
    return SiteMap(name, _origins(path_text, raw.get("origins")), _floor_plan(path, raw.get("floor_plan")))
