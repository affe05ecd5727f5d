"""Browser test of the operator console's fleet-operations views against a real control server stack.

Stack (real processes, loopback only): a secured NATS hub (JetStream) and one leaf nats-server per robot
(configs from site_setup/nats_config.py, as a site runs them); robot_agent on r1 and r2 (presence, /rosout
forwarding into each robot's LOGS_<id> stream); robot_sim + nats_bridge on r1 (live telemetry);
fleet_registry on the hub (registry bucket, FLEET_LOGS sourcing the robots' streams, the console's
registry and log-query services); jobs_service with the NATS API only (no MQTT devices: executions stay
QUEUED/SCHEDULED until canceled); the console's ws_agent (ROS node, fleet mode). Each control-side service
uses its least-privileged hub user (fleet_nats.service_user_entry). Debian's headless Chromium is driven
by test/browser/ui_driver.mjs.

What a user relies on, checked here:
- before fleet_registry runs, the fleet view says the registry is unavailable and still works; once it
  runs, the table shows each robot's registry record (site, host, software and package versions) merged
  with r1's live telemetry, and r2 turns offline with its last-seen time after its robot_agent stops;
- a warning logged on r1 is in the log view's history (level filter: an info line is not), and a warning
  logged while the view is open appears live;
- an admin starts a job from the deploy view (pasted job document, two robots, canary 1): the jobs
  service holds it with the document and rollout given, the list shows it with per-status counts and
  the progress table each robot's execution state; "Roll back" on r1 creates a rollback job for r1 only;
  Cancel cancels it, and a viewer following the job sees its executions CANCELED live (jobs events);
- a viewer sees the deploy controls disabled, and the agent refuses a create anyway;
- no request leaves 127.0.0.1; no script errors; screenshots go to test-results/web_ui/.

test_console_deploys_and_rolls_back_over_mqtt runs the deploy view against the full jobs path of
test_jobs_system.py (its Site: Mosquitto with TLS and the shipped ACL, jobs_service with MQTT, SeaweedFS,
deploy_service on r1) on a plain nats-server, with robot_agent + fleet_registry so the console knows r1.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest

from fixtures_s3 import SeaweedFS
from helpers import REPO, RosNodeThread, free_port, ros_env, wait_for, wait_port
from robot_platform.launcher.domains import DomainReservation
from robot_platform.launcher.supervisor import ProcessGroup
from robot_platform.site_setup.nats_config import (
    Endpoint,
    Fleet,
    render_hub,
    render_robot,
    service_user_entry,
    write_private,
)
from test_deploy_system import BUCKET, Publisher, function_source
from test_jobs_system import WAIT_S, Site, seaweedfs, site  # noqa: F401 (seaweedfs, site: fixtures)
from test_web_ui import (  # noqa: F401 (browser: fixture)
    ARTIFACTS,
    ICON_STATUS_JS,
    WEB_DIR,
    Browser,
    agent_argv,
    browser,
    token,
    write_users,
)

SRC = str(REPO / "src" / "robot_platform")
ROBOTS = ("r1", "r2")
START_S = 60.0
STEP_S = 20.0
OFFLINE_AFTER_S = 3.0
SITE = "test-site"
PACKAGE = "nav_app"
AGENT = """
/**/robot_agent:
  ros__parameters:
    robot_id: {robot}
    site: {site}
    nats_url: {url}
    announce_period_s: 0.5
    capabilities: [sim, deploy]
    report_packages: [nats-py, msgpack]
"""
SIM_BRIDGE = """
/**/robot_sim:
  ros__parameters:
    robot_id: {robot}
    odom_rate_hz: 10.0
    imu_rate_hz: 1.0
    scan_rate_hz: 1.0
/**/nats_bridge:
  ros__parameters:
    robot_id: {robot}
    nats_url: {url}
    metrics_port: 0
    discovery_period_s: 0.0
    out:
      names: [odom, battery]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry, max_rate_hz: 5.0}}
      battery: {{topic: /battery_state, type: sensor_msgs/msg/BatteryState}}
"""
REGISTRY = """
/**/fleet_registry:
  ros__parameters:
    nats_url: {url}
    nats_user: fleet_registry
    nats_password_file: {password_file}
    fleet_robots: [r1, r2]
    offline_after_s: {offline}
    sweep_period_s: 0.5
"""
CONSOLE = """
/**/ws_agent:
  ros__parameters:
    mode: fleet
    robot_id: control
    port: {port}
    nats_url: {url}
    nats_user: console
    nats_password_file: {password_file}
    users_file: {users}
    anonymous_role: viewer
    web_dir: {web}
"""
JOBS = """
/**/jobs_service:
  ros__parameters:
    store_path: {store}
    nats_url: {url}
    nats_user: jobs
    nats_password_file: {password_file}
    mqtt_endpoint: ""
    metrics_port: 0
"""
SHA = "0" * 64
DOCUMENT = {"package_name": PACKAGE, "version": "1.2.0", "artifact_uri": f"s3://packages/{PACKAGE}/1.2.0.tar.gz",
            "sha256": SHA, "signature": "c2lnbmF0dXJl", "kind": "app"}  # fmt: skip
ROW = "#fleet-body tr[data-robot={}]"
NO_VALUE = "\u2013"  # what a table cell shows for "no value"


def nats_request(url: str, user: str, password: str, subject: str, body: dict[str, Any]) -> Any:
    """One request to a control-side service on the hub (as the unrestricted ``control`` user)."""

    async def run() -> Any:
        nc = await nats.connect(url, user=user, password=password, connect_timeout=3, allow_reconnect=False)
        try:
            msg = await nc.request(subject, msgpack.packb(body), timeout=5)
        finally:
            await nc.close()
        return msgpack.unpackb(msg.data, raw=False)

    return asyncio.run(run())


@pytest.fixture
def domains() -> Any:
    block = DomainReservation(count=3)  # r1, r2, control side
    try:
        yield block.domain_id
    finally:
        block.release()


def test_console_fleet_logs_and_jobs(procs: ProcessGroup, domains: int, browser: Browser, tmp_path: Path,  # noqa: F811
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    exe = os.environ.get("NATS_SERVER") or "nats-server"
    py = {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    control_domain = domains + 2

    # NATS: the hub with the service users, one leaf server per robot.
    fleet = Fleet.generate(list(ROBOTS))
    pw = {u: secrets.token_urlsafe(24) for u in ("console", "fleet_registry", "jobs")}
    extra = [service_user_entry(u, pw[u]) for u in ("console", "fleet_registry", "jobs")]
    hub_port, leaf_port = free_port(), free_port()
    hub_conf = tmp_path / "hub.conf"
    write_private(hub_conf, render_hub(fleet, Endpoint(port=hub_port), leaf_port, str(tmp_path / "js-hub"),
                                       extra_users=extra))  # fmt: skip
    procs.start("hub", [exe, "-c", str(hub_conf)])
    wait_port(hub_port)
    robot_urls = {}
    for robot in ROBOTS:
        port = free_port()
        conf = tmp_path / f"{robot}.conf"
        write_private(conf, render_robot(robot, fleet.robots[robot], Endpoint(port=port), f"127.0.0.1:{leaf_port}",
                                         str(tmp_path / f"js-{robot}")))  # fmt: skip
        procs.start(f"nats-{robot}", [exe, "-c", str(conf)])
        robot_urls[robot] = f"nats://127.0.0.1:{port}"
    for url in robot_urls.values():
        wait_port(int(url.rsplit(":", 1)[1]))
    hub_url = f"nats://127.0.0.1:{hub_port}"
    secret_files = {}
    for user, password in pw.items():
        secret_files[user] = tmp_path / f"{user}.password"
        write_private(secret_files[user], password + "\n")

    def ros_node(name: str, module: str, params: str, domain: int) -> Any:
        path = tmp_path / f"{name}.yaml"
        path.write_text(params)
        argv = [sys.executable, "-m", module, "--ros-args", "--params-file", str(path)]
        return procs.start(name, argv, env=ros_env(domain, py))

    # Control side without the registry first: the console must work (and say so) without it.
    users = write_users(tmp_path)
    console_port = free_port()
    ros_node("console.ws_agent", "robot_platform.ws.node",
             CONSOLE.format(port=console_port, url=hub_url, password_file=secret_files["console"], users=users,
                            web=WEB_DIR), control_domain)  # fmt: skip
    ros_node("jobs_service", "robot_platform.jobs.node",
             JOBS.format(store=tmp_path / "jobs.sqlite3", url=hub_url, password_file=secret_files["jobs"]),
             control_domain)  # fmt: skip
    wait_port(console_port, timeout=START_S)
    console = f"http://127.0.0.1:{console_port}/console/"
    b = browser
    b.do("open", page="admin", url=f"{console}?token={token('ada')}#/fleet", width=1400, height=820)
    note = b.wait("admin", "!document.querySelector('#fleet-note').hidden && "
                           "document.querySelector('#fleet-note').textContent", START_S)  # fmt: skip
    assert "registry unavailable" in note, note

    # Robots and the registry.
    app = None
    try:
        ros_node("fleet_registry", "robot_platform.ops.registry_node",
                 REGISTRY.format(url=hub_url, password_file=secret_files["fleet_registry"], offline=OFFLINE_AFTER_S),
                 control_domain)  # fmt: skip
        agents = {}
        for i, robot in enumerate(ROBOTS):
            params = AGENT.format(robot=robot, site=SITE, url=robot_urls[robot])
            agents[robot] = ros_node(f"{robot}.robot_agent", "robot_platform.ops.node", params, domains + i)
        sim = SIM_BRIDGE.format(robot="r1", url=robot_urls["r1"])
        ros_node("r1.robot_sim", "robot_platform.sim.node", sim, domains)
        ros_node("r1.nats_bridge", "robot_platform.bridge.node", sim, domains)
        app = RosNodeThread(PACKAGE, domains)  # an application on r1's graph that logs (robot_agent forwards /rosout)
        app.start()
        run_scenario(b, console, hub_url, fleet.control_password, agents, app)
    finally:
        if app is not None:
            app.close()


def run_scenario(b: Browser, console: str, hub_url: str, control_pw: str, agents: dict[str, Any],
                 app: RosNodeThread) -> None:  # fmt: skip
    shot = lambda page, name: b.do("screenshot", page=page, path=str(ARTIFACTS / f"{name}.png"))  # noqa: E731
    hub = lambda subject, body: nats_request(hub_url, "control", control_pw, subject, body)  # noqa: E731

    # 1. Fleet view: registry records (site, host, versions) merged with r1's live telemetry; the note goes.
    b.wait("admin", "document.querySelector('#fleet-note').hidden", START_S)
    rows = b.wait(
        "admin",
        "(() => { const row = (id) => document.querySelector(`#fleet-body tr[data-robot=${id}]`);"
        f" const ok = ['r1', 'r2'].every(id => row(id)?.dataset.status === 'online' "
        f"&& row(id).querySelector('[data-col=site]').textContent === '{SITE}') "
        "&& window.__console.robots.get('r1').battery && window.__console.robots.get('r1').odom;"
        " return ok && Object.fromEntries(['r1', 'r2'].map(id => [id, Object.fromEntries("
        "[...row(id).querySelectorAll('td')].map(td => [td.dataset.col, td.textContent]))])); })()",
        START_S,
    )
    for robot in ROBOTS:
        assert rows[robot]["status"].startswith("online"), rows
        assert rows[robot]["host"] not in ("", NO_VALUE), rows  # the robot's host name, from its announcement
        assert "msgpack" in rows[robot]["software"] and "nats-py" in rows[robot]["software"], rows
    assert rows["r1"]["battery"].endswith("%") and rows["r1"]["mode"] != "unknown", rows  # telemetry merged
    assert rows["r2"]["battery"] == NO_VALUE, rows  # r2 runs no simulator: registry only

    # 2. r2's robot_agent stops: offline with its last-seen time; r1 stays online.
    agents["r2"].send_signal(signal.SIGINT)
    agents["r2"].wait(timeout=15)
    stopped = time.monotonic()
    status = b.wait("admin", f"document.querySelector('{ROW.format('r2')}[data-status=offline]')"
                             f"?.querySelector('[data-col=status]').textContent", STEP_S)  # fmt: skip
    sys.stdout.write(f"r2 offline in the console {time.monotonic() - stopped:.1f}s after its agent stopped\n")
    assert "last seen" in status, status
    assert b.do("eval", page="admin", js=f"document.querySelector('{ROW.format('r1')}').dataset.status") == "online"
    assert "0 offline" not in b.do("eval", page="admin", js="document.querySelector('#fleet-summary').textContent")
    b.do("viewport", page="admin", width=1400, height=300)
    shot("admin", "console_fleet_registry")
    b.do("viewport", page="admin", width=1400, height=820)

    # 3. Logs: a warning from before the view opened comes from history, a new one live; info is filtered out.
    tag = uuid.uuid4().hex[:8]
    app.node.get_logger().info(f"planner idle {tag}")
    app.node.get_logger().warning(f"battery low {tag}")
    app.node.get_logger().error(f"motor driver fault {tag}")

    def stored() -> bool:
        reply = hub("fleet.logs.query", {"robot": "r1", "level": "warn", "grep": tag, "since_s": 600})
        return reply.get("ok") and len(reply["result"]["entries"]) == 2

    wait_for(stored, START_S, "the warning and the error in FLEET_LOGS")
    b.do("goto", page="admin", url=f"{console}?token={token('ada')}#/logs")
    b.do("select", page="admin", selector="#l-level", value="warn")
    b.wait("admin", "window.__console.logs.filter.level === 'warn' && !window.__console.logs.loading")
    lines = b.wait(
        "admin",
        "(() => { const l = [...document.querySelectorAll('#l-lines .ln')]"
        f".filter(x => x.textContent.includes('{tag}'));"
        " return l.length >= 2 && l.map(x => [x.dataset.src, x.dataset.level, x.dataset.robot, x.textContent]); })()",
        STEP_S,
    )
    assert [x[:3] for x in lines] == [["history", "warn", "r1"], ["history", "error", "r1"]], lines
    assert f"[{PACKAGE}]" in lines[0][3] and "battery low" in lines[0][3], lines
    app.node.get_logger().info(f"planner resumed {tag}-live")
    app.node.get_logger().warning(f"obstacle too close {tag}-live")
    live = b.wait(
        "admin",
        "[...document.querySelectorAll('#l-lines .ln[data-src=live]')]"
        f".find(x => x.textContent.includes('obstacle too close {tag}-live'))?.dataset.level",
    )
    assert live == "warn", live
    shown = b.do("eval", page="admin", js="document.querySelector('#l-lines').textContent")
    assert "planner idle" not in shown and "planner resumed" not in shown, "info lines shown below the warn filter"
    shot("admin", "console_logs")
    # Pause holds new lines (counted) until Follow; the view keeps at most the last 2000 lines.
    b.do("click", page="admin", selector="#l-follow")
    app.node.get_logger().warning(f"held while paused {tag}")
    b.wait("admin", "document.querySelector('#l-status').textContent.includes('paused: 1 new lines waiting')")
    assert "held while paused" not in b.do("eval", page="admin", js="document.querySelector('#l-lines').textContent")
    b.do("click", page="admin", selector="#l-follow")
    b.wait("admin", f"document.querySelector('#l-lines').textContent.includes('held while paused {tag}')")
    burst = b.do(
        "eval",
        page="admin",
        js="(() => { const t0 = performance.now(); for (let i = 0; i < 5000; i++) window.__console.logs.onLive("
        "{robot: 'r1', stamp: Date.now() / 1000, level: 'warn', node: 'burst', msg: `line ${i}`}, 'r1');"
        " return performance.now() - t0; })()",
    )
    lines = b.wait(
        "admin",
        "(box => box.textContent.includes('line 4999') && box.children.length)(document.querySelector('#l-lines'))",
    )
    sys.stdout.write(f"5000 log lines taken in {burst:.0f} ms; {lines} kept in the view\n")
    assert lines == 2000

    # 4. Deploy as admin: a job through the jobs service, with per-robot progress and counts.
    b.do("dialogs", page="admin", accept=True)
    b.do("goto", page="admin", url=f"{console}?token={token('ada')}#/deploy")
    b.wait("admin", "document.querySelectorAll('#dep-robots input').length === 2 "
                    "&& !document.querySelector('#dep-start').disabled")  # fmt: skip
    b.do("fill", page="admin", selector="#dep-doc", text=json.dumps(DOCUMENT))
    assert b.do("eval", page="admin", js="document.querySelector('#dep-version').value") == "1.2.0"
    for robot in ROBOTS:
        b.do("check", page="admin", selector=f"#dep-robots input[value={robot}]")
    b.do("fill", page="admin", selector="#dep-canary", text="1")
    b.do("fill", page="admin", selector="#dep-abort", text="2")
    b.do("click", page="admin", selector="#dep-start")
    job_id = b.wait("admin", "document.querySelector('#dep-progress tr[data-robot=r2]') "
                             "&& window.__console.deploy.selected")  # fmt: skip
    job = hub("jobs.get", {"job_id": job_id})
    assert job["ok"], job
    job = job["result"]
    assert job["document"] == {"operation": "deploy", **DOCUMENT}, job["document"]
    assert job["targets"] == ["r1", "r2"] and job["rollout"]["canary"] == 1 and job["rollout"]["abort_failures"] == 2
    states = {ex["thing"]: ex["status"] for ex in job["executions"]}
    assert states == {"r1": "QUEUED", "r2": "SCHEDULED"}, states  # canary first, the rest waits
    shown = b.wait(
        "admin",
        "Object.fromEntries([...document.querySelectorAll('#dep-progress tr[data-robot]')].map(tr => "
        "[tr.dataset.robot, tr.dataset.status]))",
    )
    assert shown == states, shown
    counts = b.wait("admin", f"document.querySelector('#dep-jobs tr[data-job=\"{job_id}\"] td.counts')?.textContent")
    assert "1 queued" in counts and "1 scheduled" in counts, counts
    shot("admin", "console_deploy_jobs")

    # Roll back r1: a new one-robot job with the rollback document (the jobs service takes it as given).
    b.do("click", page="admin", selector="#dep-progress tr[data-robot=r1] button")
    rollback_id = b.wait(
        "admin",
        f"window.__console.deploy.selected !== '{job_id}' && document.querySelector('#dep-progress tr[data-robot=r1]')"
        " && window.__console.deploy.selected",
    )
    rollback = hub("jobs.get", {"job_id": rollback_id})["result"]
    assert rollback["document"] == {"operation": "rollback", "package_name": PACKAGE, "to_version": ""}, rollback
    assert rollback["targets"] == ["r1"], rollback["targets"]

    # 5. A viewer follows the first job; the admin cancels it: the viewer sees it live (jobs events).
    b.do("open", page="viewer", url=f"{console}?token={token('vera')}#/deploy", width=1400, height=820)
    b.wait("viewer", f"document.querySelector('#dep-jobs tr[data-job=\"{job_id}\"]') "
                     "&& document.querySelectorAll('#dep-robots input').length === 2")  # fmt: skip
    b.do("click", page="viewer", selector=f'#dep-jobs tr[data-job="{job_id}"] td')
    progress = (
        "Object.fromEntries([...document.querySelectorAll('#dep-progress tr[data-robot]')]"
        ".map(tr => [tr.dataset.robot, tr.dataset.status]))"
    )
    selected = f"window.__console.deploy.detail?.job_id === '{job_id}'"
    shown = f"(p => {selected} && Object.keys(p).length === 2 && p)({progress})"
    assert b.wait("viewer", shown) == states
    b.do("click", page="admin", selector=f'#dep-jobs tr[data-job="{job_id}"] button')
    b.wait("admin", f"document.querySelector('#dep-jobs tr[data-job=\"{job_id}\"]')?.dataset.status === 'CANCELED'")
    job = hub("jobs.get", {"job_id": job_id})["result"]
    assert job["status"] == "CANCELED" and {ex["status"] for ex in job["executions"]} == {"CANCELED"}, job
    canceled = {"r1": "CANCELED", "r2": "CANCELED"}
    assert b.wait("viewer", f"JSON.stringify({progress}) === '{json.dumps(canceled, separators=(',', ':'))}' "
                            f"&& {progress}") == canceled  # fmt: skip

    # The viewer's deploy controls are all disabled, and the agent refuses a create anyway.
    disabled = b.do(
        "eval",
        page="viewer",
        js="[...document.querySelectorAll('#dep-form input, #dep-form textarea, #dep-form button, #dep-jobs button, "
        "#dep-progress button, #dep-cancel')]"
        ".every(x => x.disabled)",
    )
    assert disabled is True
    refused = b.do("eval", page="viewer", js="window.__console.client.callService('/fleet/jobs/create', '', "
                                             "{document: {operation: 'deploy'}, targets: ['r1']})")  # fmt: skip
    assert not refused["ok"] and "viewer" in refused["error"], refused
    shot("viewer", "console_deploy_viewer")

    # 6. Nothing left 127.0.0.1, and the pages ran without script errors.
    report = b.do("report")
    assert report["external"] == [], report["external"]
    assert report["localRequests"] > 10
    page_errors = [e for e in report["errors"] if "pageerror" in e]
    assert page_errors == [], page_errors


# ---------------------------------------------------------------------------------------- the full MQTT path
def test_console_deploys_and_rolls_back_over_mqtt(
    seaweedfs: SeaweedFS,  # noqa: F811
    site: Site,  # noqa: F811
    procs: ProcessGroup,
    nats_server: Any,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The deploy view drives real robots: signed packages in S3, jobs_service + Mosquitto (TLS, the
    shipped ACL), deploy_service on r1 taking its jobs over MQTT. An admin deploys 1.0.0 then 2.0.0 from the
    console (pasting what ``package push`` printed) and rolls r1 back: each execution's progress arrives
    live (IN_PROGRESS steps, then SUCCEEDED with the versions) and r1's installed version follows.
    Pages opened after the deployments (console via ``/?token=...#/robot/r1``, which must keep the hash,
    and r1's touch panel) show the version r1 runs, from deploy_service's installed summary on NATS."""
    seaweedfs.create_bucket(BUCKET)
    pub = Publisher(seaweedfs, tmp_path)
    pushed = {v: pub.publish(function_source(tmp_path, v)) for v in ("1.0.0", "2.0.0")}
    site.start_jobs_service((f"packages_bucket:={BUCKET}", f"s3_endpoint_url:={seaweedfs.endpoint_url}",
                             f"s3_credentials_file:={seaweedfs.credentials_file}"))  # fmt: skip
    site.start_robot("r1", seaweedfs, pub.trusted, nats_url=nats_server.url)
    # The console learns of r1 from the registry (robot_agent's presence, fleet_registry on the control side).
    agent = tmp_path / "r1.agent.yaml"
    agent.write_text(AGENT.format(robot="r1", site=SITE, url=nats_server.url))
    registry = tmp_path / "registry.yaml"
    registry.write_text(f"/**/fleet_registry:\n  ros__parameters:\n    nats_url: {nats_server.url}\n")
    for name, module, params, env in (
        ("r1.robot_agent", "robot_platform.ops.node", agent, site.env(1)),
        ("fleet_registry", "robot_platform.ops.registry_node", registry, site.env(0)),
    ):
        procs.start(name, [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)], env=env)
    console_port = free_port()
    users = write_users(tmp_path)
    procs.start("console.ws_agent", agent_argv("fleet", "control", console_port, nats_server.url, users),
                env=site.env(0))  # fmt: skip
    panel_port = free_port()
    procs.start("r1.ws_agent", agent_argv("robot", "r1", panel_port, nats_server.url, users), env=site.env(1))
    wait_port(console_port, timeout=START_S)
    b = browser
    b.do("open", page="admin", url=f"http://127.0.0.1:{console_port}/console/?token={token('ada')}#/deploy",
         width=1400, height=620)  # fmt: skip
    b.do("dialogs", page="admin", accept=True)
    ready = "document.querySelector('#dep-robots input[value=r1]') && !document.querySelector('#dep-start').disabled"
    b.wait("admin", ready, START_S)
    # Every status r1's progress row shows, in order (rows are redrawn on each change).
    b.do(
        "eval",
        page="admin",
        js="""(() => { window.__seen = [];
        new MutationObserver(() => { const tr = document.querySelector('#dep-progress tr[data-robot=r1]');
          const s = tr && `${window.__console.deploy.selected} ${tr.dataset.status}`;
          if (s && window.__seen.at(-1) !== s) window.__seen.push(s); })
        .observe(document.querySelector('#dep-progress'), { childList: true, subtree: true }); })()""",
    )
    b.do("check", page="admin", selector="#dep-robots input[value=r1]")

    def deploy(version: str) -> dict[str, Any]:
        b.do("fill", page="admin", selector="#dep-desc", text="")
        b.do("fill", page="admin", selector="#dep-doc", text=json.dumps(pushed[version]))
        b.do("click", page="admin", selector="#dep-start")
        return finished(f"window.__console.deploy.detail?.document?.version === '{version}'")

    def finished(which: str) -> dict[str, Any]:
        cells = b.wait(
            "admin",
            f"{which} && (tr => tr?.dataset.job === window.__console.deploy.selected "
            "&& ['SUCCEEDED', 'FAILED', 'REJECTED'].includes(tr.dataset.status) && "
            "{status: tr.dataset.status, step: tr.children[2].textContent, detail: tr.children[4].textContent, "
            "job: window.__console.deploy.selected})(document.querySelector('#dep-progress tr[data-robot=r1]'))",
            WAIT_S,
        )
        raw = b.do("eval", page="admin", js="window.__seen")
        seen = [s.split(" ")[1] for s in raw if s.startswith(cells["job"])]
        assert "IN_PROGRESS" in seen and seen[-1] == cells["status"], raw  # progress arrived live, in order
        return cells

    # 1.0.0 picked from the packages bucket (jobs.catalogue: what `package push` uploaded), 2.0.0 pasted.
    b.wait("admin", "document.querySelector('#dep-cat-pkg option[value=hello_fn]')", WAIT_S)
    b.do("select", page="admin", selector="#dep-cat-pkg", value="hello_fn")
    versions = b.do("eval", page="admin", js="[...document.querySelectorAll('#dep-cat-ver option')].map(o => o.value)")
    assert versions == ["", "2.0.0", "1.0.0"], versions  # newest first
    b.do("select", page="admin", selector="#dep-cat-ver", value="1.0.0")
    picked = b.do("eval", page="admin", js="window.__console.deploy.document()")
    assert {k: picked[k] for k in pushed["1.0.0"]} == pushed["1.0.0"], (picked, pushed["1.0.0"])
    b.do("fill", page="admin", selector="#dep-retry-failed", text="2")
    b.do("click", page="admin", selector="#dep-start")
    done = finished("window.__console.deploy.detail?.document?.version === '1.0.0'")
    assert done["status"] == "SUCCEEDED" and "version 1.0.0" in done["detail"], done
    assert b.do("eval", page="admin", js="window.__console.deploy.detail.retry") == {"failed": 2, "timed_out": 0}
    b.do("fill", page="admin", selector="#dep-retry-failed", text="0")
    for version in ("2.0.0",):
        done = deploy(version)
        assert done["status"] == "SUCCEEDED" and done["step"] == "done" and f"version {version}" in done["detail"], done
    current = tmp_path / "robots" / "r1" / "hello_fn" / "current"
    assert os.readlink(current).endswith("2.0.0")
    jobs = b.wait(
        "admin",
        "(rows => rows.length === 2 && rows.map(tr => tr.dataset.status + ' ' + tr.querySelector('td.counts')"
        ".textContent))([...document.querySelectorAll('#dep-jobs tr[data-job]')])",
    )
    assert jobs == ["COMPLETED 1 succeeded"] * 2, jobs
    packages = b.do("eval", page="admin", js="[...document.querySelectorAll('#dep-jobs [data-col=package]')]"
                    ".map(td => td.textContent)")  # fmt: skip
    assert packages == ["hello_fn 2.0.0", "hello_fn 1.0.0"], packages
    # Roll r1 back from the 2.0.0 job's progress row: a rollback job, executed by r1's deploy_service.
    b.do("click", page="admin", selector="#dep-progress tr[data-robot=r1] button")
    rolled = finished("window.__console.deploy.detail?.document?.operation === 'rollback'")
    assert rolled["status"] == "SUCCEEDED", rolled
    assert "version 1.0.0" in rolled["detail"] and "previous 2.0.0" in rolled["detail"], rolled
    assert os.readlink(current).endswith("1.0.0")

    # A job canceled part-way (r1 done, r9 never started) leaves mixed versions: "Roll the fleet back"
    # sends every robot it changed (r1 only) back to its own previous version.
    b.do("select", page="admin", selector="#dep-cat-ver", value="2.0.0")
    b.do("eval", page="admin", js="(d => d.create({job_id: 'mixed-1', document: d.document(), targets: ['r1', 'r9'], "
         "rollout: {canary: 1, max_per_minute: 10, abort_failures: 1}, description: 'r1 then r9'}, 'mixed'))"
         "(window.__console.deploy)")  # fmt: skip
    b.wait("admin", "window.__console.deploy.execs.get('r1')?.status === 'SUCCEEDED' && "
           "window.__console.deploy.selected === 'mixed-1'", WAIT_S)  # fmt: skip
    assert os.readlink(current).endswith("2.0.0")
    b.do("click", page="admin", selector="#dep-cancel")
    label = b.wait(
        "admin", "(btn => !btn.hidden && btn.textContent)(document.querySelector('#dep-rollback-fleet'))", WAIT_S
    )
    assert label == "Roll the fleet back (1)", label
    b.do("click", page="admin", selector="#dep-rollback-fleet")
    back = finished("window.__console.deploy.detail?.document?.operation === 'rollback' && "
                    "window.__console.deploy.detail.targets.join() === 'r1'")  # fmt: skip
    assert back["status"] == "SUCCEEDED" and "version 1.0.0" in back["detail"], back
    assert os.readlink(current).endswith("1.0.0")
    b.do("viewport", page="admin", width=1400, height=720)
    b.do("eval", page="admin", js="document.querySelector('#view-deploy').scrollTop = 0")
    b.do("screenshot", page="admin", path=str(ARTIFACTS / "console_deploy_rollout.png"))

    # Pages opened now never saw a status: they learn what r1 runs from deploy_service's installed summary.
    # "/" routes to the console and keeps the hash: the robot view of r1 opens, not the fleet view.
    b.do("open", page="late", url=f"http://127.0.0.1:{console_port}/?token={token('ada')}#/robot/r1",
         width=1400, height=820)  # fmt: skip
    opened = b.wait("late", "location.pathname === '/console/' && location.hash", START_S)
    assert opened == "#/robot/r1", opened
    b.wait("late", "!document.querySelector('#view-robot').hidden")
    installed = b.wait(
        "late",
        "(tr => tr && tr.children[1].textContent === '1.0.0' && [...tr.children].map(td => td.textContent))"
        "(document.querySelector('#d-installed tr[data-package=hello_fn]'))",
        WAIT_S,
    )
    assert installed[0] == "hello_fn" and installed[2] == "function" and "2.0.0" in installed[5], installed
    b.do("screenshot", page="late", path=str(ARTIFACTS / "console_robot_installed.png"))
    b.do("eval", page="late", js="location.hash = '#/fleet'")
    cell = b.wait("late", f"document.querySelector('{ROW.format('r1')} [data-col=version]')?.textContent", STEP_S)
    assert cell == "hello_fn 1.0.0", cell
    b.do("open", page="panel", url=f"http://127.0.0.1:{panel_port}/?token={token('ada')}", width=1024, height=600)
    tile = b.wait(
        "panel",
        "location.pathname === '/panel/' && (t => t.includes('hello_fn') && t)"
        "(document.querySelector('[data-testid=deploy]').textContent)",
        WAIT_S,
    )
    assert tile == "hello_fn 1.0.0", tile
    for page in ("late", "panel"):  # no 404 for the page icon (browsers ask for /favicon.ico without one)
        assert b.do("eval", page=page, js=ICON_STATUS_JS) == 200, page
    b.do("screenshot", page="panel", path=str(ARTIFACTS / "panel_installed.png"))
    report = b.do("report")
    assert report["external"] == [], report["external"]
    assert [e for e in report["errors"] if "pageerror" in e] == []
    assert report["notFound"] == [], report["notFound"]  # e.g. no /favicon.ico on "/" or the panel
