// Touch panel of one robot (served by the robot's ws_agent in robot mode: names without /robots/<id>).
import { RosClient, agentUrl } from "../lib/rosbridge.js";
import { loadSession, may } from "../lib/session.js";
import { RobotModel, DEPLOY_STATES } from "../lib/robot_model.js";
import {
  $, el, fmtAge, fmtNum, setText, setClass, frameBatcher, toast, connectionBanner, STALE_MS, SEVERITY,
} from "../lib/util.js";
import { initTheme } from "../lib/theme.js";

const JOG_PERIOD_MS = 100; // cmd_vel at 10 Hz while a jog button is held
const JOG_LINEAR = 0.3, JOG_ANGULAR = 0.6; // m/s, rad/s ("fast" doubles both)
const RELEASE_ARM_MS = 3000;
const SRV = {
  estop: ["/robot_sim/estop", "std_srvs/srv/SetBool"],
  pause: ["/robot_sim/pause", "std_srvs/srv/SetBool"],
  ack: ["/health_monitor_tree/acknowledge_alert", "robot_platform_interfaces/srv/AcknowledgeAlert"],
};

initTheme();
const session = await loadSession((text) => setText($("#who"), text));
initTheme(session.user, $("#theme"));
const robotId = session.robot_id;
const model = new RobotModel(robotId);
const client = new RosClient({ url: agentUrl(), token: session.token });
const can = {
  jog: may(session, "publish", robotId, "/cmd_vel"),
  estop: may(session, "call", robotId, SRV.estop[0]),
  pause: may(session, "call", robotId, SRV.pause[0]),
  ack: may(session, "call", robotId, SRV.ack[0]),
};
window.__panel = { model, client, session, can, jogSent: 0 }; // read by the browser tests

setText($("#robot-name"), robotId);
document.title = `${robotId} - touch panel`;
setText($("#who"), `${session.user} (${session.role})`);
if (!can.jog || !can.estop) {
  setText($("#role-note"), `Role ${session.role}: ${[!can.jog && "driving", !can.estop && "e-stop",
    !can.pause && "pause", !can.ack && "acknowledging"].filter(Boolean).join(", ")} not allowed. Log in as an operator.`);
}

// ------------------------------------------------------------------ data
const redraw = frameBatcher(render);
const sub = (topic, opts, fn) => client.subscribe(topic, opts, (m) => { fn(m); redraw(); });
sub("/odom", { throttle_rate: 100, queue_length: 1 }, (m) => model.onOdom(m));
sub("/battery_state", { queue_length: 1 }, (m) => model.onBattery(m));
sub("/health", { queue_length: 1 }, (m) => model.onHealth(m));
sub("/alerts", { queue_length: 50 }, (m) => model.onAlert(m));
sub("/robot_state", { queue_length: 1 }, (m) => model.onRobotState(m));
sub("/cmd_vel", { throttle_rate: 100, queue_length: 1 }, (m) => model.onCommand(m.linear.x)); // if bridged out
sub("/deploy/status", { queue_length: 20 }, (m) => model.onDeploy(m));
sub("/deploy/installed", { queue_length: 1 }, (m) => model.onInstalled(m));
client.addEventListener("status", (ev) => { if (ev.detail.level === "error") toast(ev.detail.msg, "bad"); });

// ------------------------------------------------------------------ jog pad with dead-man release
let jog = null; // {dir, timer, button}
function twistFor(dir) {
  const k = $("#fast").checked ? 2 : 1;
  const lin = { fwd: JOG_LINEAR, back: -JOG_LINEAR }[dir] || 0;
  const ang = { left: JOG_ANGULAR, right: -JOG_ANGULAR }[dir] || 0;
  return { linear: { x: lin * k, y: 0, z: 0 }, angular: { x: 0, y: 0, z: ang * k } };
}
function sendTwist(t) {
  if (client.publish("/cmd_vel", "geometry_msgs/msg/Twist", t)) window.__panel.jogSent += 1;
  model.onCommand(t.linear.x);
}
function startJog(button) {
  if (!can.jog || !client.connected || model.estopped) return;
  stopJog();
  const dir = button.dataset.dir;
  button.classList.add("held");
  const tick = () => sendTwist(twistFor(dir));
  tick();
  jog = { dir, button, timer: setInterval(tick, JOG_PERIOD_MS) };
  setText($("#jog-state"), `driving ${dir}`);
}
function stopJog(reason = "") {
  if (!jog) return;
  clearInterval(jog.timer);
  jog.button.classList.remove("held");
  jog = null;
  sendTwist(twistFor("none")); // explicit zero: do not wait for the base's command timeout
  setText($("#jog-state"), reason ? `stopped: ${reason}` : "hold to drive");
}
for (const b of document.querySelectorAll(".jogbtn")) {
  b.addEventListener("pointerdown", (ev) => { ev.preventDefault(); startJog(b); });
  for (const type of ["pointerup", "pointerleave", "pointercancel", "lostpointercapture"]) {
    b.addEventListener(type, () => stopJog());
  }
  b.addEventListener("contextmenu", (ev) => ev.preventDefault());
}
addEventListener("blur", () => stopJog("window lost focus"));
document.addEventListener("visibilitychange", () => { if (document.hidden) stopJog("panel hidden"); });
addEventListener("pagehide", () => stopJog());

// ------------------------------------------------------------------ e-stop, pause, release
async function call(key, args, what) {
  const [name, type] = SRV[key];
  const r = await client.callService(name, type, args);
  if (r.ok && r.values && r.values.success !== false) toast(`${what}: ${r.values.message || "done"}`, "good");
  else toast(`${what} failed: ${r.ok ? r.values.message : r.error}`, "bad");
  return r;
}
$("#estop").addEventListener("click", async () => {
  stopJog("e-stop");
  model.estopped = true; // latch locally at once; the robot's answer confirms it
  redraw();
  const r = await call("estop", { data: true }, "E-stop");
  window.__panel.lastEstop = r;
  if (!r.ok) { model.estopped = null; redraw(); }
});
$("#pause").addEventListener("click", async () => {
  const pausing = !model.paused;
  if (pausing) stopJog("paused");
  const r = await call("pause", { data: pausing }, pausing ? "Pause" : "Resume");
  if (r.ok) { model.paused = pausing; redraw(); }
});
// -Infinity, not 0: performance.now() counts from page load, so 0 would arm the button for the page's
// first 3 s and a single tap could release the e-stop.
let releaseArmed = -Infinity;
$("#release").addEventListener("click", async () => {
  const b = $("#release");
  if (performance.now() - releaseArmed > RELEASE_ARM_MS) { // two taps: a release is never an accident
    releaseArmed = performance.now();
    b.classList.add("armed");
    b.textContent = "Tap again to release";
    setTimeout(() => { b.classList.remove("armed"); b.textContent = "Release e-stop"; }, RELEASE_ARM_MS);
    return;
  }
  releaseArmed = -Infinity;
  b.classList.remove("armed");
  b.textContent = "Release e-stop";
  const r = await call("estop", { data: false }, "E-stop release");
  if (r.ok) { model.estopped = false; redraw(); }
});

async function acknowledge(alert) {
  const r = await call("ack", { alert_id: alert.alert_id, user: session.user }, `Acknowledge ${alert.code}`);
  if (r.ok && r.values.success) { model.markAcknowledged(alert.alert_id, session.user); redraw(); }
}

// ------------------------------------------------------------------ rendering
function tile(id, text, t) {
  const node = $(id);
  const age = performance.now() - t;
  setText(node.querySelector(".value"), text);
  setText(node.querySelector(".age"), Number.isFinite(age) ? fmtAge(age) : "no data");
  setClass(node, "stale", !(age < STALE_MS) || !client.connected);
  setClass(node.querySelector(".age"), "stale-age", !(age < STALE_MS));
}
function render() {
  const now = performance.now();
  const b = model.battery, o = model.odom, d = model.deploy;
  tile("#t-battery", b ? fmtNum(b.pct * 100, 0, " %") : "–", b ? b.t : NaN);
  const fill = $("#t-battery .fill");
  fill.style.width = b ? `${Math.max(0, Math.min(1, b.pct)) * 100}%` : "0";
  setClass(fill, "low", !!b && b.pct < 0.2);
  tile("#t-speed", o ? fmtNum(o.speed, 2, " m/s") : "–", o ? o.t : NaN);
  // A job in progress shows its step and progress; otherwise what is installed (deploy_service repeats
  // its summary, so a panel started after the deployments knows too) and how the last job ended.
  const s = d?.status;
  const running = s && (s.state === 0 || s.state === 1);
  const lastJob = s ? `${s.package_name}@${s.version}: ${s.state_name || DEPLOY_STATES[s.state] || "?"}${
    s.step ? ` (${s.step})` : ""}${s.reason ? ` - ${s.reason}` : ""}` : "";
  const inst = model.installed;
  if (running || (s && !inst)) {
    tile("#t-deploy", lastJob, d.t);
    $("#t-deploy .fill").style.width = `${Math.round((s.progress || 0) * 100)}%`;
  } else {
    const installed = inst ? model.installedText || "no package installed" : model.deployedVersion;
    const text = [installed, s && s.state !== 2 ? `last job ${lastJob}` : ""].filter(Boolean).join(" · ");
    tile("#t-deploy", text || "no deployment reported", inst ? inst.t : d ? d.t : NaN);
    $("#t-deploy .fill").style.width = "0";
  }
  const mode = model.mode;
  const modeNode = $("#mode");
  setText(modeNode, mode.toUpperCase());
  modeNode.className = `pill mode-${mode}`;
  const link = model.linkUp;
  const linkNode = $("#link");
  setText(linkNode, link === null ? "control link ?" : link ? "control link up" : "control link DOWN");
  linkNode.className = `pill ${link === null ? "off" : link ? "ok" : "error"}`;
  const conn = $("#conn");
  setText(conn, client.connected ? "agent connected" : "agent offline");
  conn.className = `pill ${client.connected ? "ok" : "error"}`;

  const up = client.connected;
  for (const jb of document.querySelectorAll(".jogbtn")) jb.disabled = !can.jog || !up || !!model.estopped;
  $("#estop").disabled = !can.estop || !up;
  setClass($("#estop"), "latched", !!model.estopped);
  $("#pause").disabled = !can.pause || !up || !!model.estopped;
  setText($("#pause"), model.paused ? "Resume" : "Pause");
  $("#release").disabled = !can.estop || !up;
  $("#release").hidden = !model.estopped;
  renderAlerts(now);
}

let alertsKey = "";
function renderAlerts(now) {
  const alerts = [...model.alerts.values()].sort((a, b) => b.severity - a.severity || a.code.localeCompare(b.code));
  const count = $("#alert-count");
  setText(count, String(alerts.length));
  count.className = `pill ${alerts.length ? SEVERITY[model.maxSeverity] || "warn" : "ok"}`;
  const h = model.health;
  setText($("#alerts-age"), h ? `health ${fmtAge(now - h.t)}` : "no health data");
  const key = alerts.map((a) => `${a.alert_id}:${a.acknowledged}`).join(",") + `|${client.connected}`;
  if (key === alertsKey) return; // unchanged list: leave the DOM alone
  alertsKey = key;
  const list = $("#alert-list");
  list.replaceChildren();
  if (!alerts.length) list.append(el("li", { class: "none" }, "No active alerts"));
  for (const a of alerts) {
    const ack = el("button", { class: "btn", "data-alert": a.alert_id, text: a.acknowledged ? "Acked" : "ACK" });
    ack.disabled = a.acknowledged || !can.ack || !client.connected;
    ack.addEventListener("click", () => acknowledge(a));
    list.append(el("li", { class: `sev-${a.severity}${a.acknowledged ? " acked" : ""}`, "data-code": a.code },
      el("span", { class: "txt" }, el("span", { class: "code", text: `${SEVERITY[a.severity] || ""} ${a.code}` }),
        el("span", { class: "msg", text: a.acknowledged ? `acknowledged by ${a.acknowledged_by}` : a.message })),
      ack));
  }
}

connectionBanner(client, (up) => { if (!up) stopJog("link lost"); render(); });
setInterval(() => { setText($("#clock"), new Date().toLocaleTimeString()); render(); }, 1000);
render();
