// Operator console (served by the control server's ws_agent in fleet mode): fleet overview, robot
// detail, alert feed, deployments. Views render in requestAnimationFrame batches and touch only rows
// whose robot changed, so 50 robots at a few messages per second each stay cheap.
import { RosClient, agentUrl } from "../lib/rosbridge.js";
import { loadSession } from "../lib/session.js";
import { RobotModel } from "../lib/robot_model.js";
import {
  $, el, fmtAge, fmtNum, setText, setClass, frameBatcher, toast, connectionBanner, STALE_MS, OFFLINE_MS, SEVERITY,
} from "../lib/util.js";
import { DetailView } from "./detail.js";
import { AlertsView } from "./alerts.js";
import { DeployView } from "./deploy.js";

const FLEET_ODOM_THROTTLE_MS = 500; // per robot in the overview; the detail view asks for 10 Hz
const ROBOT_ID_RE = /^[A-Za-z0-9_]{1,64}$/;

const session = await loadSession((text) => setText($("#who"), text));
setText($("#who"), `${session.user} (${session.role})`);
const client = new RosClient({ url: agentUrl(), token: session.token });
const robots = new Map(); // id -> RobotModel
const listeners = new Set(); // fn(kind, robot) called on each change
const ctx = { client, session, robots, listeners, robot: ensureRobot, redraw: null };
window.__console = ctx; // read by the browser tests

// ------------------------------------------------------------------ fleet subscriptions
function ensureRobot(id) {
  let r = robots.get(id);
  if (!r && ROBOT_ID_RE.test(id)) {
    r = new RobotModel(id);
    r.batteryHistory = [];
    robots.set(id, r);
    client.subscribe(`/robots/${id}/odom`, { throttle_rate: FLEET_ODOM_THROTTLE_MS, queue_length: 1 },
      (m) => changed("odom", r, () => r.onOdom(m)));
    fleet.added(r);
  }
  return r;
}
function changed(kind, robot, apply) {
  if (!robot) return;
  apply();
  fleet.dirty.add(robot.id);
  for (const fn of listeners) fn(kind, robot);
  schedule();
}
const wild = (rest, fn, queue = 200) => client.subscribe(`/robots/*/${rest}`, { queue_length: queue },
  (m, robotId) => changed(rest, ensureRobot(robotId), () => fn(robots.get(robotId), m)));
wild("battery_state", (r, m) => { r.onBattery(m); r.batteryHistory.push([performance.now(), m.percentage]);
  if (r.batteryHistory.length > 900) r.batteryHistory.shift(); });
wild("health", (r, m) => r.onHealth(m));
wild("alerts", (r, m) => r.onAlert(m));
wild("robot_state", (r, m) => r.onRobotState(m));
wild("deploy/status", (r, m) => r.onDeploy(m));
client.addEventListener("status", (ev) => { if (ev.detail.level === "error") toast(ev.detail.msg, "bad"); });

function setConn() {
  const c = $("#conn");
  setText(c, client.connected ? "agent connected" : "agent offline");
  c.className = `pill ${client.connected ? "ok" : "error"}`;
}

// ------------------------------------------------------------------ fleet table
const fleet = {
  rows: new Map(), // id -> {tr, cells, version}
  dirty: new Set(),
  filter: "",
  added(r) {
    const cells = {};
    const tr = el("tr", { "data-robot": r.id, onclick: () => { location.hash = `#/robot/${r.id}`; } });
    for (const k of ["id", "status", "mode", "battery", "speed", "alerts", "version", "link"]) {
      cells[k] = el("td", { class: ["mode", "battery", "speed"].includes(k) ? "live" : "", "data-col": k });
      tr.append(cells[k]);
    }
    cells.id.textContent = r.id;
    cells.battery.append(el("span", { class: "batt" }, el("i")), el("span", { class: "v" }));
    const tbody = $("#fleet-body");
    const after = [...this.rows.keys()].filter((k) => k.localeCompare(r.id, undefined, { numeric: true }) > 0).sort(
      (a, b) => a.localeCompare(b, undefined, { numeric: true }))[0];
    tbody.insertBefore(tr, after ? this.rows.get(after).tr : null);
    this.rows.set(r.id, { tr, cells, version: -1 });
    this.dirty.add(r.id);
  },
  renderRow(r, now) {
    const row = this.rows.get(r.id);
    const c = row.cells;
    const age = now - r.lastSeen;
    const online = age < OFFLINE_MS && client.connected;
    setText(c.status, `${online ? "online" : "offline"} · ${fmtAge(age)}`);
    setClass(row.tr, "offline", !online);
    setClass(row.tr, "stale", !(age < STALE_MS) || !client.connected);
    if (row.version === r.version) return;
    row.version = r.version;
    const mode = r.mode;
    setText(c.mode, mode);
    c.mode.className = `live sev-${mode === "estop" || mode === "fault" ? 2 : mode === "paused" ? 1 : "x"}`;
    const b = r.battery;
    const fill = c.battery.querySelector("i");
    fill.style.width = b ? `${Math.max(0, Math.min(1, b.pct)) * 100}%` : "0";
    setClass(fill, "low", !!b && b.pct < 0.2);
    setText(c.battery.querySelector(".v"), b ? fmtNum(b.pct * 100, 0, " %") : "–");
    setText(c.speed, r.odom ? fmtNum(r.odom.speed, 2, " m/s") : "–");
    const n = r.alerts.size;
    setText(c.alerts, n ? `${n}${r.unacknowledged ? ` (${r.unacknowledged} new)` : ""}` : "0");
    c.alerts.className = n ? `sev-${r.maxSeverity}` : "";
    setText(c.version, r.deployedVersion || "–");
    const link = r.linkUp;
    setText(c.link, link === null ? "?" : link ? "up" : "DOWN");
    c.link.className = link === false ? "sev-2" : "";
  },
  applyFilter() {
    const f = this.filter;
    for (const [id, row] of this.rows) {
      const r = robots.get(id);
      const hay = `${id} ${r.mode} ${r.deployedVersion} ${r.alerts.size ? "alert" : ""}`.toLowerCase();
      row.tr.hidden = !!f && !hay.includes(f);
    }
  },
  render(now, all) {
    const ids = all ? robots.keys() : this.dirty;
    for (const id of ids) { const r = robots.get(id); if (r) this.renderRow(r, now); }
    this.dirty.clear();
    let online = 0, alerts = 0;
    for (const r of robots.values()) {
      if (now - r.lastSeen < OFFLINE_MS && client.connected) online += 1;
      alerts += r.alerts.size;
    }
    setText($("#fleet-summary"), `${robots.size} robots · ${online} online · ${robots.size - online} offline · ${alerts} active alerts`);
    $("#fleet-empty").hidden = robots.size > 0;
    const nav = $("#nav-alerts");
    setText(nav, String(alerts));
    nav.className = `pill ${alerts ? "warn" : ""}`;
  },
};
$("#fleet-filter").addEventListener("input", (ev) => { fleet.filter = ev.target.value.trim().toLowerCase(); fleet.applyFilter(); });

// ------------------------------------------------------------------ views and routing
const detail = new DetailView(ctx);
const alerts = new AlertsView(ctx);
const deploy = new DeployView(ctx);
let current = "fleet";
function route() {
  const [, view = "fleet", arg = ""] = location.hash.split("/");
  current = ["fleet", "robot", "alerts", "deploy"].includes(view) ? view : "fleet";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${current}`;
  for (const a of document.querySelectorAll(".top nav a")) setClass(a, "active", a.dataset.view === current);
  if (current === "robot") {
    const nav = $("#nav-robot");
    nav.hidden = false; nav.href = `#/robot/${arg}`; nav.textContent = `Robot ${arg}`;
    detail.open(decodeURIComponent(arg));
  } else {
    detail.close();
  }
  schedule(true);
}
addEventListener("hashchange", route);

let full = true;
const draw = frameBatcher(() => {
  const now = performance.now();
  fleet.render(now, full);
  if (full) fleet.applyFilter();
  if (current === "robot") detail.render(now);
  if (current === "alerts") alerts.render(now);
  if (current === "deploy") deploy.render(now);
  full = false;
});
function schedule(all = false) { full = full || all; draw(); }
ctx.redraw = schedule;
setInterval(() => schedule(true), 1000); // ages, online/offline, stale marks
connectionBanner(client, () => { setConn(); schedule(true); });
route();
