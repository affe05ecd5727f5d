// Robot detail: live charts (speed commanded vs actual, battery), trajectory, laser scan, camera on
// demand, health tree, and the operator controls the role allows.
import { TimeChart, TrajectoryView, drawScan } from "../lib/chart.js";
import { may } from "../lib/session.js";
import { DEPLOY_STATES } from "../lib/robot_model.js";
import { $, el, fmtAge, fmtNum, setText, setClass, toast, STALE_MS, OFFLINE_MS } from "../lib/util.js";

const DETAIL_ODOM_THROTTLE_MS = 100;
const FLEET_ODOM_THROTTLE_MS = 500;
const SCAN_THROTTLE_MS = 200;
const TREE_REFRESH_MS = 1000;
const CHART_MIN_PERIOD_MS = 100;

export class DetailView {
  constructor(ctx) {
    this.ctx = ctx;
    this.id = null;
    this.unsubs = [];
    this.speed = new TimeChart($("#c-speed"), { series: [{ name: "commanded", color: "#ffb020" },
      { name: "actual", color: "#4da3ff" }], windowS: 60, unit: "m/s" });
    this.battery = new TimeChart($("#c-battery"), { series: [{ name: "battery", color: "#39d98a" }], windowS: 900,
      unit: "%", min: 0, max: 100 });
    this.traj = new TrajectoryView($("#c-traj"));
    this.scan = null;
    this.frame = null; // {url, t}
    this.treeAt = 0;
    ctx.listeners.add((kind, robot) => {
      if (robot.id !== this.id) return;
      const now = performance.now();
      if (kind === "odom" && robot.odom) {
        this.speed.push(1, now, robot.odom.speed);
        if (robot.commanded) this.speed.push(0, now, now - robot.commanded.t < 1500 ? robot.commanded.v : 0);
        this.traj.push(robot.odom.x, robot.odom.y, robot.odom.theta);
      } else if (kind === "battery_state" && robot.battery) {
        this.battery.push(0, now, robot.battery.pct * 100);
      }
    });
    const call = (srv, type, args, what) => this.call(srv, type, args, what);
    $("#d-estop").addEventListener("click", () => call("/robot_sim/estop", "std_srvs/srv/SetBool", { data: true }, "E-stop"));
    $("#d-release").addEventListener("click", () => {
      if (confirm(`Release the e-stop of ${this.id}? Make sure the area is clear.`)) {
        call("/robot_sim/estop", "std_srvs/srv/SetBool", { data: false }, "E-stop release");
      }
    });
    $("#d-pause").addEventListener("click", () => {
      const r = this.ctx.robots.get(this.id);
      const pausing = !(r && r.paused);
      call("/robot_sim/pause", "std_srvs/srv/SetBool", { data: pausing }, pausing ? "Pause" : "Resume");
    });
    $("#d-cam-toggle").addEventListener("click", () => this.toggleCamera());
  }

  async call(name, type, args, what) {
    const id = this.id;
    const r = await this.ctx.client.callService(`/robots/${id}${name}`, type, args);
    const robot = this.ctx.robots.get(id);
    if (r.ok && r.values?.success !== false) {
      toast(`${id}: ${what}: ${r.values?.message || "done"}`, "good");
      if (robot && name.endsWith("/estop")) robot.estopped = !!args.data;
      if (robot && name.endsWith("/pause")) robot.paused = !!args.data;
      if (robot) robot.version += 1;
      this.ctx.redraw(true);
    } else {
      toast(`${id}: ${what} failed: ${r.ok ? r.values?.message : r.error}`, "bad");
    }
  }

  open(id) {
    if (id === this.id) return;
    this.close();
    const robot = this.ctx.robot(id);
    if (!robot) return;
    this.id = id;
    this.speed.clear(); this.battery.clear(); this.traj.clear(); this.scan = null;
    for (const [t, v] of robot.batteryHistory || []) this.battery.push(0, t, v * 100);
    const client = this.ctx.client;
    client.setOptions(`/robots/${id}/odom`, { throttle_rate: DETAIL_ODOM_THROTTLE_MS });
    this.unsubs.push(client.subscribe(`/robots/${id}/scan`, { throttle_rate: SCAN_THROTTLE_MS, queue_length: 1 },
      (m) => { this.scan = { msg: m, t: performance.now() }; this.ctx.redraw(); }));
    this.unsubs.push(client.subscribe(`/robots/${id}/cmd_vel`, { throttle_rate: DETAIL_ODOM_THROTTLE_MS,
      queue_length: 1 }, (m) => robot.onCommand(m.linear.x))); // robots.<id>.ros.cmd_vel, if bridged out
    const s = this.ctx.session;
    const canStop = may(s, "call", id, "/robot_sim/estop"), canPause = may(s, "call", id, "/robot_sim/pause");
    for (const [sel, ok] of [["#d-estop", canStop], ["#d-release", canStop], ["#d-pause", canPause]]) {
      $(sel).hidden = !ok; // a viewer sees no controls at all
    }
    setText($("#d-name"), id);
    this.treeAt = 0;
  }

  close() {
    if (!this.id) return;
    this.stopCamera();
    this.ctx.client.setOptions(`/robots/${this.id}/odom`, { throttle_rate: FLEET_ODOM_THROTTLE_MS });
    for (const u of this.unsubs) u();
    this.unsubs = [];
    this.id = null;
  }

  toggleCamera() {
    if (this.camUnsub) { this.stopCamera(); return; }
    const topic = `/robots/${this.id}/frames/front`;
    this.camUnsub = this.ctx.client.subscribe(topic, { queue_length: 1 }, (m) => {
      const data = m.data ?? m.msg?.data; // {op:"frame", meta, data:<jpeg bytes>}
      if (!(data instanceof Uint8Array)) return;
      if (this.frame) URL.revokeObjectURL(this.frame.url);
      this.frame = { url: URL.createObjectURL(new Blob([data.slice()], { type: "image/jpeg" })), t: performance.now() };
      $("#d-cam").src = this.frame.url;
      $(".camera").classList.add("on");
      const meta = m.meta || {};
      this.frame.info = `${meta.width}x${meta.height} q${meta.quality} #${meta.seq}`;
    });
    setText($("#d-cam-toggle"), "Hide camera");
    setText($("#d-cam-note"), "waiting for frames...");
  }

  stopCamera() {
    if (this.camUnsub) { this.camUnsub(); this.camUnsub = null; }
    if (this.frame) { URL.revokeObjectURL(this.frame.url); this.frame = null; }
    $(".camera").classList.remove("on");
    $("#d-cam").removeAttribute("src");
    setText($("#d-cam-toggle"), "Show camera");
    setText($("#d-cam-note"), "camera off (frames are sent only while shown)");
  }

  /** Installed packages from deploy_service's summary (redrawn only when a new summary arrived). */
  renderInstalled(r) {
    const inst = r.installed;
    const key = `${r.id}|${inst ? inst.t : "-"}|${r.deploy?.t}`;
    if (key === this.installedKey) return;
    this.installedKey = key;
    const fmtWhen = (s) => (s > 0 ? new Date(s * 1000).toLocaleString() : "?");
    $("#d-installed").replaceChildren(...(inst?.packages || []).map((p) => el("tr", { "data-package": p.name },
      el("td", { text: p.name }), el("td", { text: p.version }), el("td", { text: p.kind }),
      el("td", { text: p.kind === "app" ? (p.running ? "running" : "stopped") : "ready" }),
      el("td", { text: fmtWhen(p.activated_at) }), el("td", { text: (p.versions || []).join(", ") }))));
    setText($("#d-installed-note"), [inst ? (inst.packages.length ? "" : "no package installed")
      : "no report from deploy_service yet (robots.<id>.deploy.installed)", lastJob(r)].filter(Boolean).join(" · "));
  }

  render(now) {
    const r = this.ctx.robots.get(this.id);
    if (!r) return;
    const connected = this.ctx.client.connected;
    const age = (x) => (x ? now - x.t : NaN);
    const badge = (sel, x) => {
      const a = age(x);
      setText($(sel), Number.isFinite(a) ? fmtAge(a) : "no data");
      setClass($(sel), "stale-age", !(a < STALE_MS) || !connected);
    };
    const online = now - r.lastSeen < OFFLINE_MS && connected;
    const st = $("#d-status");
    setText(st, online ? "online" : `offline · last seen ${fmtAge(now - r.lastSeen)}`);
    st.className = `pill ${online ? "ok" : "off"}`;
    const mode = $("#d-mode");
    setText(mode, r.mode);
    mode.className = `pill mode-${r.mode}`;
    setText($("#d-facts"), `battery ${r.battery ? fmtNum(r.battery.pct * 100, 0, " %") : "–"} · speed ${
      r.odom ? fmtNum(r.odom.speed, 2, " m/s") : "–"} · ${r.alerts.size} alerts · ${r.deployedVersion || "no deployment"}`);
    $("#d-pause").textContent = r.paused ? "Resume" : "Pause";
    for (const sel of ["#d-estop", "#d-pause", "#d-release"]) $(sel).disabled = !connected;
    badge("#d-speed-age", r.odom); badge("#d-odom-age", r.odom); badge("#d-battery-age", r.battery);
    badge("#d-scan-age", this.scan); badge("#d-health-age", r.health); badge("#d-installed-age", r.installed);
    this.renderInstalled(r);
    if (this.camUnsub) {
      badge("#d-cam-age", this.frame);
      if (this.frame) setText($("#d-cam-age"), `${$("#d-cam-age").textContent} · ${this.frame.info}`);
    } else {
      setText($("#d-cam-age"), "");
    }
    if (now - (this.drawnAt || 0) < CHART_MIN_PERIOD_MS) return; // canvases at most 10 Hz (CPU)
    this.drawnAt = now;
    this.speed.draw(now);
    this.battery.draw(now);
    this.traj.draw();
    drawScan($("#c-scan"), this.scan && this.scan.msg);
    if (r.health && now - this.treeAt > TREE_REFRESH_MS) {
      this.treeAt = now;
      $("#d-tree").replaceChildren(treeList(r.health.snap.root));
    } else if (!r.health) {
      setText($("#d-tree"), "no health snapshot (robots.<id>.health) yet");
    }
  }
}

/** The last deployment status this page saw, as one line ("" if none). */
function lastJob(r) {
  const s = r.deploy?.status;
  if (!s) return "";
  return `last job: ${s.package_name} ${s.version} ${s.state_name || DEPLOY_STATES[s.state] || "?"}${
    s.step ? ` (${s.step})` : ""}${s.reason ? ` - ${s.reason}` : ""}`;
}

function treeList(node) {
  const ul = el("ul");
  const li = el("li");
  const state = node.code !== undefined ? node.state : node.status;
  li.append(el("span", { class: `st st-${state}`, text: state }), ` ${node.name}`);
  if (node.code !== undefined) {
    li.append(el("span", { class: "muted", text: ` ${node.code}${node.message ? ` - ${node.message}` : ""}${
      node.acknowledged_by ? ` (ack ${node.acknowledged_by})` : ""}${node.silenced ? " (silenced)" : ""}` }));
  }
  ul.append(li);
  for (const child of node.children || []) li.append(treeList(child));
  return ul;
}
