"""The console's site map (ws/site_map.py): the file read at start, and GET /site, /site/floor_plan for
logged-in users only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_platform.ws.hashing import hash_secret
from robot_platform.ws.http_api import HttpReply
from robot_platform.ws.server import AgentConfig, WsAgent
from robot_platform.ws.site_map import SiteMapError, load_site_map
from robot_platform.ws.topics import Mode

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"/>'


def site_file(tmp_path: Path, **overrides: object) -> Path:
    (tmp_path / "plan.svg").write_bytes(SVG)
    data = {"name": "Hall A", "origins": "r1:0,2,0; r2:6,-1,1.57",
            "floor_plan": {"image": "plan.svg", "resolution": 0.05, "origin": [-2, -4]}} | overrides  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(data))
    return path


def get(agent: WsAgent, target: str, token: str = "") -> HttpReply:
    headers = {"Host": "127.0.0.1:9090"} | ({"Authorization": f"Bearer {token}"} if token else {})
    reply = agent.api.handle("GET", target, headers, ("127.0.0.1", 5555))
    assert isinstance(reply, HttpReply)
    return reply


def make_agent(tmp_path: Path, site: Path, anonymous_role: str = "") -> WsAgent:
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  otto: {{role: operator, secret_hash: '{hash_secret('otto-pw')}'}}\n")
    return WsAgent(AgentConfig(mode=Mode.FLEET, robot_id="control", users_file=str(users),
                               anonymous_role=anonymous_role, site_map_file=str(site)))  # fmt: skip


def test_file_gives_origins_and_floor_plan(tmp_path: Path) -> None:
    site = load_site_map(str(site_file(tmp_path)))
    assert site.origins == {"r1": (0.0, 2.0, 0.0), "r2": (6.0, -1.0, 1.57)}
    assert site.floor_plan is not None and site.floor_plan.content_type == "image/svg+xml"
    assert site.to_json()["floor_plan"] == {"url": "/site/floor_plan", "resolution": 0.05, "origin": [-2.0, -4.0]}


def test_origins_as_a_mapping_and_no_file_at_all(tmp_path: Path) -> None:
    site = load_site_map(str(site_file(tmp_path, origins={"r3": [1, 2, 3]}, floor_plan=None)))
    assert site.origins == {"r3": (1.0, 2.0, 3.0)} and site.floor_plan is None
    assert load_site_map("").to_json() == {"name": "", "origins": {}, "floor_plan": None}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"origins": "r1:0,nope,0"}, "origins"),
        ({"origins": {"r1": [0, 0]}}, "origins.r1"),
        ({"floor_plan": {"image": "plan.svg", "resolution": 0, "origin": [0, 0]}}, "floor_plan.resolution"),
        ({"floor_plan": {"image": "plan.gif", "resolution": 1}}, "floor_plan.image"),
        ({"floor_plan": {"image": "missing.png", "resolution": 1}}, "floor_plan.image"),
    ],
)
def test_a_wrong_file_names_the_field(tmp_path: Path, overrides: dict[str, object], field: str) -> None:
    with pytest.raises(SiteMapError) as err:
        load_site_map(str(site_file(tmp_path, **overrides)))
    assert err.value.field == field


def test_site_and_plan_only_for_logged_in_users(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, site_file(tmp_path))
    assert get(agent, "/site").status == 401
    assert get(agent, "/site/floor_plan").status == 401
    assert get(agent, "/site", "otto:wrong").status == 401
    reply = get(agent, "/site", "otto:otto-pw")
    assert reply.status == 200 and json.loads(reply.body)["origins"]["r2"] == [6.0, -1.0, 1.57]
    plan = get(agent, "/site/floor_plan", "otto:otto-pw")
    assert (plan.status, plan.content_type, plan.body) == (200, "image/svg+xml", SVG)


def test_anonymous_role_sees_the_site_and_no_plan_is_a_404(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, site_file(tmp_path, floor_plan=None), anonymous_role="viewer")
    assert json.loads(get(agent, "/site").body)["floor_plan"] is None
    assert get(agent, "/site/floor_plan").status == 404
