// Operator console (served by the control server's ws_agent in fleet mode): fleet overview (registry +
// live telemetry), robot detail, alert feed, logs, deployments through the jobs service. Views render in
// requestAnimationFrame batches and touch only rows whose robot changed, so 50 robots at a few messages
// per second each stay cheap.
import { RosClient, agentUrl } from "../lib/rosbridge.js";
import { loadSession } from "../lib/session.js";
import { RobotModel } from "../lib/robot_model.js";
import {
  $, el, fmtAge, fmtNum, setText, setClass, frameBatcher, toast, connectionBanner, STALE_MS, OFFLINE_MS, SEVERITY,
} from "../lib/util.js";
import { DetailView } from "./detail.js";
import { AlertsView } from "./alerts.js";
import { AuditView } from "./audit.js";
import { DeployView } from "./deploy.js";
import { LogsView } from "./logs.js";
import { RegistryFeed } from "./registry.js";
import { SiteView } from "./site.js";
import { initTheme } from "../lib/theme.js";

const FLEET_ODOM_THROTTLE_MS = 500; // per robot in the overview; the detail view asks for 10 Hz
const ROBOT_ID_RE = /^[A-Za-z0-9_]{1,64}$/;
const FLEET_COLUMNS = ["id", "status", "site", "host", "software", "mode", "battery", "speed", "alerts", "version", "link"];

/** Online/offline and when last seen: the registry's word when it knows the robot, else telemetry's. */
function presence(r, now) {
  const reg = r.registry;
  if (reg) {
    const online = reg.online && client.connected;
    // The control server's clock: a browser clock running behind it must not make "last seen" negative.
    return { online, status: online ? "online" : "offline", seenMs: Math.max(0, Date.now() - reg.last_seen * 1000) };
  }
  const seenMs = now - r.lastSeen;
  const online = seenMs < OFFLINE_MS && client.connected;
  return { online, status: online ? "online" : "offline", seenMs };
}
/** Tooltip of the Deployed cell: each installed package with kind, state and the versions kept. */
function installedTitle(r) {
  const pkgs = r.installed?.packages || [];
  if (!pkgs.length) return r.installed ? "deploy_service reports no installed package" : "";
  return pkgs.map((p) => `${p.name} ${p.version} (${p.kind}${p.kind === "app" ? (p.running ? ", running" : ", stopped") : ""
  }; on disk: ${(p.versions || []).join(", ")})`).join("\n");
}
const fmtClock = (s) => (Number.isFinite(s) ? new Date(s * 1000).toLocaleString() : "?");
function fmtUptime(s) {
  if (!Number.isFinite(s)) return "?";
  return s < 3600 ? `${Math.round(s / 60)} min` : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 86400)} d`;
}

initTheme(); // the last theme used in this browser at once (no flash), the user's own once known
const session = await loadSession((text) => setText($("#who"), text));
initTheme(session.user, $("#theme"));
setText($("#who"), `${session.user} (${session.role})`);
const client = new RosClient({ url: agentUrl(), token: session.token });
const robots = new Map(); // id -> RobotModel
const listeners = new Set(); // fn(kind, robot) called on each change
const ctx = { client, session, robots, listeners, robot: ensureRobot, changed, redraw: null };
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
wild("deploy/installed", (r, m) => r.onInstalled(m), 50);
// Refusals of service calls are reported by the view that made the call (not twice).
client.addEventListener("status", (ev) => { if (ev.detail.level === "error" && !ev.detail.answered) toast(ev.detail.msg, "bad"); });

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
    for (const k of FLEET_COLUMNS) {
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
    const p = presence(r, now);
    setText(c.status, p.online ? `online · ${fmtAge(p.seenMs)}` : `offline · last seen ${fmtAge(p.seenMs)}`);
    if (row.tr.dataset.status !== p.status) row.tr.dataset.status = p.status;
    setClass(row.tr, "offline", !p.online);
    setClass(row.tr, "stale", !(age < STALE_MS) || !client.connected);
    if (row.version === r.version) return;
    row.version = r.version;
    const reg = r.registry;
    c.status.title = reg ? `registry: ${reg.status}, last seen ${fmtClock(reg.last_seen)}, first seen ${
      fmtClock(reg.first_seen)}` : "not in the fleet registry: presence from live telemetry";
    setText(c.site, reg?.site || "–");
    setText(c.host, reg?.host || "–");
    const pkgs = reg ? Object.entries(reg.packages).map(([k, v]) => `${k} ${v}`) : [];
    setText(c.software, reg ? [reg.software, ...pkgs].filter(Boolean).join(" · ") || "–" : "–");
    c.software.title = reg ? [`software ${reg.software || "?"}`, ...pkgs, `uptime ${fmtUptime(reg.uptime_s)}`,
      `capabilities: ${reg.capabilities.join(", ") || "none"}`].join("\n") : "";
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
    c.version.title = installedTitle(r);
    const link = r.linkUp;
    setText(c.link, link === null ? "?" : link ? "up" : "DOWN");
    c.link.className = link === false ? "sev-2" : "";
  },
  applyFilter() {
    const f = this.filter;
    for (const [id, row] of this.rows) {
      const r = robots.get(id);
      const reg = r.registry;
      const hay = `${id} ${r.mode} ${r.deployedVersion} ${r.alerts.size ? "alert" : ""} ${
        reg ? `${reg.status} ${reg.site} ${reg.host} ${reg.software} ${Object.values(reg.packages).join(" ")}` : ""
      }`.toLowerCase();
      row.tr.hidden = !!f && !hay.includes(f);
    }
  },
  render(now, all) {
    const ids = all ? robots.keys() : this.dirty;
    for (const id of ids) { const r = robots.get(id); if (r) this.renderRow(r, now); }
    this.dirty.clear();
    let online = 0, alerts = 0;
    for (const r of robots.values()) {
      if (presence(r, now).online) online += 1;
      alerts += r.alerts.size;
    }
    const note = registry.note();
    setText($("#fleet-note"), note);
    $("#fleet-note").hidden = !note;
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
const logs = new LogsView(ctx);
const site = new SiteView(ctx, presence);
const audit = new AuditView(ctx);
Object.assign(ctx, { detail, alerts, deploy, logs, site, audit });
let current = "fleet";
function route() {
  const [, view = "fleet", arg = ""] = location.hash.split("/");
  current = ["fleet", "site", "robot", "alerts", "deploy", "logs", "audit"].includes(view) ? view : "fleet";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${current}`;
  for (const a of document.querySelectorAll(".top nav a")) setClass(a, "active", a.dataset.view === current);
  if (current === "robot") {
    const nav = $("#nav-robot");
    nav.hidden = false; nav.href = `#/robot/${arg}`; nav.textContent = `Robot ${arg}`;
    detail.open(decodeURIComponent(arg));
  } else {
    detail.close();
  }
  if (current === "logs") logs.open(); else logs.close();
  if (current === "site") site.open();
  if (current === "audit") audit.open();
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
  if (current === "logs") logs.render(now);
  if (current === "site") site.render(now);
  full = false;
});
function schedule(all = false) { full = full || all; draw(); }
ctx.redraw = schedule;
setInterval(() => schedule(true), 1000); // ages, online/offline, stale marks
connectionBanner(client, () => { setConn(); schedule(true); });
const registry = new RegistryFeed(ctx);
ctx.registry = registry;
route();
