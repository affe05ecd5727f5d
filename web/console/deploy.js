// Deployments from the console: one job (package, version, signed artifact) to the robots picked,
// sent as each robot's deploy_service `deploy` service call through ws_agent (admin role), per-robot
// progress from robots.<id>.deploy.status, roll back with the `rollback` service.
// The control server's jobs API (NATS jobs.create, staged rollout) is not reachable over the
// WebSocket (ws_agent maps services to robots.<id>.srv.*); this view deploys to robots directly.
import { may } from "../lib/session.js";
import { DEPLOY_STATES } from "../lib/robot_model.js";
import { $, el, setText, toast, newId, OFFLINE_MS } from "../lib/util.js";

const DEPLOY = ["/deploy", "robot_platform_interfaces/srv/Deploy"];
const ROLLBACK = ["/rollback", "robot_platform_interfaces/srv/Rollback"];

export class DeployView {
  constructor(ctx) {
    this.ctx = ctx;
    this.job = null; // {id, package_name, version, robots: Map id -> {answer, status}}
    this.picked = new Set();
    this.shown = new Set();
    $("#dep-doc").addEventListener("input", () => this.fromDocument());
    $("#dep-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.start(); });
    $("#dep-all").addEventListener("click", () => this.pickAll(true));
    $("#dep-none").addEventListener("click", () => this.pickAll(false));
    ctx.listeners.add((kind, robot) => {
      const entry = this.job && this.job.robots.get(robot.id);
      if (kind === "deploy/status" && entry && robot.deploy.status.job_id === entry.jobId) {
        entry.status = robot.deploy.status;
      }
    });
  }

  allowed() { return [...this.ctx.robots.keys()].some((id) => may(this.ctx.session, "call", id, DEPLOY[0])); }

  fromDocument() {
    try {
      const d = JSON.parse($("#dep-doc").value);
      const set = (id, v) => { if (typeof v === "string") $(id).value = v; };
      set("#dep-name", d.package_name ?? d.name); set("#dep-version", d.version); set("#dep-uri", d.artifact_uri);
      set("#dep-sha", d.sha256); set("#dep-sig", d.signature); set("#dep-kind", d.kind);
      setText($("#dep-note"), "");
    } catch {
      setText($("#dep-note"), "job document: not valid JSON yet");
    }
  }

  pickAll(on) {
    const now = performance.now();
    this.picked.clear();
    if (on) for (const r of this.ctx.robots.values()) if (now - r.lastSeen < OFFLINE_MS) this.picked.add(r.id);
    for (const box of document.querySelectorAll("#dep-robots input")) box.checked = this.picked.has(box.value);
  }

  async start() {
    const req = {
      job_id: newId("console"), package_name: $("#dep-name").value.trim(), version: $("#dep-version").value.trim(),
      artifact_uri: $("#dep-uri").value.trim(), sha256: $("#dep-sha").value.trim(), signature: $("#dep-sig").value.trim(),
      kind: $("#dep-kind").value,
    };
    if (!this.picked.size) { toast("pick at least one robot", "bad"); return; }
    this.job = { id: req.job_id, package_name: req.package_name, version: req.version, robots: new Map() };
    setText($("#dep-job"), `job ${req.job_id}: ${req.package_name}@${req.version}`);
    const ids = [...this.picked].sort();
    for (const id of ids) this.job.robots.set(id, { jobId: req.job_id, answer: null, status: null });
    this.ctx.redraw(true);
    await Promise.all(ids.map(async (id) => {
      const r = await this.ctx.client.callService(`/robots/${id}${DEPLOY[0]}`, DEPLOY[1], req, 15000);
      this.job.robots.get(id).answer = r.ok ? r.values : { accepted: false, message: r.error };
      this.ctx.redraw(true);
    }));
  }

  async rollback(id) {
    const entry = this.job.robots.get(id);
    const jobId = newId("rollback");
    entry.jobId = jobId;
    entry.status = null;
    entry.answer = { accepted: true, message: "rolling back..." };
    this.ctx.redraw(true);
    const r = await this.ctx.client.callService(`/robots/${id}${ROLLBACK[0]}`, ROLLBACK[1],
      { package_name: this.job.package_name, to_version: "", job_id: jobId }, 30000);
    entry.answer = r.ok ? { accepted: r.values.success, message: `${r.values.message} (active ${r.values.active_version})` }
      : { accepted: false, message: r.error };
    toast(`${id}: rollback ${r.ok && r.values.success ? "done" : "failed"}`, r.ok && r.values.success ? "good" : "bad");
    this.ctx.redraw(true);
  }

  render(now) {
    const allowed = this.allowed();
    $("#dep-start").disabled = !allowed || !this.ctx.client.connected;
    setText($("#dep-note"), allowed ? "" : `role ${this.ctx.session.role} may not deploy (admin only)`);
    const box = $("#dep-robots");
    for (const r of this.ctx.robots.values()) {
      if (this.shown.has(r.id)) continue;
      this.shown.add(r.id);
      const input = el("input", { type: "checkbox", value: r.id });
      input.addEventListener("change", () => { if (input.checked) this.picked.add(r.id); else this.picked.delete(r.id); });
      box.append(el("label", {}, input, r.id));
    }
    if (!this.job) {
      $("#dep-progress").replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted",
        text: "No deployment started from this page. Robots' own deployment status shows in the fleet table." })));
      return;
    }
    $("#dep-progress").replaceChildren(...[...this.job.robots].map(([id, e]) => {
      const s = e.status, a = e.answer;
      const state = s ? s.state_name || DEPLOY_STATES[s.state] : a ? (a.accepted ? "ACCEPTED" : "REFUSED") : "sending";
      const pct = s ? Math.round((s.progress || 0) * 100) : 0;
      const rb = el("button", { class: "btn small", text: "Roll back" });
      rb.disabled = !may(this.ctx.session, "call", id, ROLLBACK[0]) || !this.ctx.client.connected;
      rb.addEventListener("click", () => this.rollback(id));
      return el("tr", { "data-robot": id }, el("td", { text: id }), el("td", { text: state }),
        el("td", { text: s?.step || "" }), el("td", {}, el("span", { class: "prog" }, el("i", { style: `width:${pct}%` })),
          ` ${pct} %`), el("td", { class: "msg", text: s?.reason || a?.message || "" }), el("td", {}, rb));
    }));
  }
}
