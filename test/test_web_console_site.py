"""Browser test of the console's site map and of the light theme, against a real running stack.

Stack (real processes, loopback only): one nats-server; two simulated robots r1, r2, each in its own ROS
domain with robot_sim + nats_bridge + health_monitor_tree; one ws_agent in fleet mode with a site map
file (r1's odometry origin at (0, 2, 0), r2's at (6, -1, pi/2), an SVG floor plan 20 m x 10 m at 0.05 m
per pixel whose bottom-left corner is at (-2, -4)). Debian's headless Chromium via test/browser.

What a user relies on, checked here:
- the site map places each robot at its origin composed with its odometry (r1 driven forward moves
  along +x of the site at y = 2; r2, turned a quarter, sits at x = 6), over the floor plan;
- a robot with an error alert turns red on the map (r2's scan silenced), and a click on it opens it;
- the light theme is chosen per user and kept across reloads; another user in the same browser keeps
  the dark one;
- /site answers only to a logged-in user; no request leaves 127.0.0.1; screenshots go to
  test-results/web_ui/ (copied to docs/screenshots/ for the README).
"""

from __future__ import annotations

import json
import math
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import free_port, ros_env, wait_port
from robot_platform.launcher.domains import DomainReservation
from robot_platform.launcher.supervisor import ProcessGroup
from test_web_ui import (  # noqa: F401 (browser: fixture)
    ARTIFACTS,
    BRIDGE,
    CHECKS,
    ICON_STATUS_JS,
    SRC,
    Browser,
    RosProbe,
    agent_argv,
    browser,
    token,
    write_users,
)

START_S = 60.0
STEP_S = 20.0
ROBOTS = ("r1", "r2")
ORIGINS = {"r1": (0.0, 2.0, 0.0), "r2": (6.0, -1.0, math.pi / 2)}
PLAN = {"resolution": 0.05, "origin": [-2.0, -4.0], "width_px": 400, "height_px": 200}
SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200" viewBox="0 0 400 200">
<rect x="0" y="0" width="400" height="200" fill="#d9dee5"/><rect x="10" y="10" width="380" height="180"
fill="none" stroke="#556" stroke-width="6"/><rect x="200" y="10" width="8" height="110" fill="#556"/>
<text x="30" y="40" font-size="18" fill="#334">Hall A</text></svg>"""
MARKERS = "window.__console?.site?.markers"


@pytest.fixture
def domains() -> Any:
    block = DomainReservation(count=len(ROBOTS))
    try:
        yield block.domain_id
    finally:
        block.release()


def write_site(tmp_path: Path) -> Path:
    (tmp_path / "hall_a.svg").write_text(SVG)
    site = {
        "name": "Hall A",
        "origins": "; ".join(f"{r}:{x},{y},{yaw}" for r, (x, y, yaw) in ORIGINS.items()),
        "floor_plan": {"image": "hall_a.svg", "resolution": PLAN["resolution"], "origin": PLAN["origin"]},
    }
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(site))  # JSON is YAML
    return path


def test_site_map_and_light_theme(procs: ProcessGroup, nats_server: Any, domains: int, browser: Browser,  # noqa: F811
                                  tmp_path: Path) -> None:  # fmt: skip
    users = write_users(tmp_path)
    py_env = {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    probes: dict[str, RosProbe] = {}
    for i, rid in enumerate(ROBOTS):
        env = ros_env(domains + i, py_env)
        params = tmp_path / f"{rid}.yaml"
        params.write_text(BRIDGE.format(rid=rid, url=nats_server.url, checks=CHECKS, state=tmp_path / f"{rid}-health"))
        for area, node in (("sim", "robot_sim"), ("bridge", "nats_bridge"), ("health", "health_monitor_tree")):
            argv = [sys.executable, "-m", f"robot_platform.{area}.node", "--ros-args", "--params-file", str(params)]
            procs.start(f"{rid}.{node}", argv, env=env)
        probes[rid] = RosProbe(domains + i)
    port = free_port()
    argv = [*agent_argv("fleet", "control", port, nats_server.url, users), "--site-map-file", str(write_site(tmp_path))]
    argv[argv.index("--anonymous-role") + 1] = ""  # /site must ask for a login
    procs.start("console.ws_agent", argv, env=os.environ | py_env)
    wait_port(port, timeout=START_S)
    try:
        run(browser, probes, f"http://127.0.0.1:{port}")
    finally:
        for probe in probes.values():
            probe.close()


def run(b: Browser, probes: dict[str, RosProbe], url: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = lambda page, name: b.do("screenshot", page=page, path=str(ARTIFACTS / f"{name}.png"))  # noqa: E731

    # /site is for logged-in users only (a floor plan is not for strangers).
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/site", timeout=STEP_S)
    assert refused.value.code == 401
    request = urllib.request.Request(f"{url}/site", headers={"Authorization": f"Bearer {token('otto')}"})
    with urllib.request.urlopen(request, timeout=STEP_S) as resp:
        site = json.load(resp)
    assert site["floor_plan"] == {"url": "/site/floor_plan", "resolution": 0.05, "origin": [-2.0, -4.0]}, site

    # 1. The map: each robot at its origin composed with its odometry, over the floor plan.
    b.do("open", page="otto", url=f"{url}/?token={token('otto')}#/site", width=1280, height=760)
    shown = "location.pathname === '/console/' && document.querySelector('#view-site')?.hidden === false"
    opened = b.wait("otto", f"{shown} && location.hash", START_S)
    assert opened == "#/site", opened  # "/" kept the hash
    assert b.do("eval", page="otto", js=ICON_STATUS_JS) == 200  # no 404 for the page icon
    plan = b.wait("otto", "window.__console.site.plan?.naturalWidth", START_S)
    assert plan == PLAN["width_px"], plan
    markers = b.wait("otto", f"{MARKERS}?.length === 2 && {MARKERS}", START_S)
    at = {m["id"]: m for m in markers}
    for rid, (x, y, _) in ORIGINS.items():  # odometry starts at 0: each robot at its origin
        assert abs(at[rid]["x"] - x) < 0.3 and abs(at[rid]["y"] - y) < 0.3, at[rid]
    assert abs(at["r2"]["theta"] - math.pi / 2) < 0.2, at["r2"]
    probes["r1"].driving = 0.5
    moved = b.wait(
        "otto", f"(m => m && m.x > 1.0 && m.state === 'moving' && m)({MARKERS}.find(m => m.id === 'r1'))", STEP_S
    )
    assert abs(moved["y"] - 2.0) < 0.3, moved  # along the site's +x at r1's origin y
    assert b.do("eval", page="otto", js="document.querySelector('#site-note').textContent") == ""
    shot("otto", "console_site_map")
    probes["r1"].driving = None

    # 2. r2 with an error alert is red on the map; a click on it opens its detail view.
    assert probes["r2"].inject("silence_sensor", "scan").success
    red = b.wait("otto", f"(m => m?.state === 'error' && m)({MARKERS}.find(m => m.id === 'r2'))", STEP_S)
    box = b.do("eval", page="otto", js="(r => [r.left, r.top])(document.querySelector('#site-canvas')"
               ".getBoundingClientRect())")  # fmt: skip
    b.do("mouse", page="otto", x=box[0] + red["px"], y=box[1] + red["py"])
    b.wait("otto", "location.hash === '#/robot/r2' && document.querySelector('#d-name').textContent === 'r2'")
    assert probes["r2"].inject("restore_sensor", "scan").success

    # 3. The light theme, per user and kept across reloads; another user keeps the dark one.
    b.do("eval", page="otto", js="location.hash = '#/site'")
    assert b.do("eval", page="otto", js="document.documentElement.dataset.theme ?? 'dark'") == "dark"
    b.do("click", page="otto", selector="[data-testid=theme-toggle]")
    bg = b.wait("otto", "document.documentElement.dataset.theme === 'light' && getComputedStyle(document.body)"
                ".backgroundColor")  # fmt: skip
    assert bg == "rgb(244, 246, 249)", bg
    b.wait("otto", f"{MARKERS}?.length === 2")
    shot("otto", "console_site_map_light")
    b.do("goto", page="otto", url=f"{url}/console/?token={token('otto')}#/fleet")
    b.wait("otto", "window.__console && document.documentElement.dataset.theme === 'light'", START_S)
    b.wait("otto", "document.querySelectorAll('#fleet-body tr').length === 2", START_S)
    shot("otto", "console_fleet_light")
    b.do("goto", page="otto", url=f"{url}/console/?token={token('vera')}#/fleet")  # same browser, vera
    b.wait("otto", "window.__console && window.__console.session.user === 'vera'", START_S)
    assert b.do("eval", page="otto", js="document.documentElement.dataset.theme ?? 'dark'") == "dark"
    b.do("goto", page="otto", url=f"{url}/console/?token={token('otto')}#/fleet")
    b.wait("otto", "window.__console && window.__console.session.user === 'otto'", START_S)
    assert b.do("eval", page="otto", js="document.documentElement.dataset.theme") == "light"

    report = b.do("report")
    assert report["external"] == [], report["external"]
    assert [e for e in report["errors"] if "pageerror" in e] == [], report["errors"]
    assert report["notFound"] == [], report["notFound"]
