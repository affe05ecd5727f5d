// Deployments through the control server's jobs service (AWS IoT Jobs semantics, staged rollout):
// the job document (form or pasted `package push` output) + the robots picked + a rollout config go to
// /fleet/jobs/create; the jobs list comes from /fleet/jobs/list (status counts per job), the picked
// job's per-robot executions from /fleet/jobs/get, and both follow /fleet/jobs/events live (reloaded on
// every reconnect). Cancel -> /fleet/jobs/cancel; "Roll back" on a robot is a new one-robot job whose
// document is {"operation": "rollback", "package_name", "to_version": ""}. Only roles whose rules allow
// the create/cancel services get enabled controls; the agent refuses the calls anyway.
// The package and version can be picked from /fleet/jobs/catalogue (what `package push` put in the
// packages bucket, listed by jobs_service) instead of pasted. After a job that failed or was canceled
// (aborted) part-way, "Roll the fleet back" creates one rollback job for every robot on which it
// succeeded: each robot goes back to its own previous version (to_version "").
import { mayFleet } from "../lib/session.js";
import { FLEET, fleetCall } from "../lib/fleet_api.js";
import { $, el, fmtAge, setText, toast, newId } from "../lib/util.js";

const LIST_LIMIT = 50;
const LIST_REFRESH_MS = 1000; // at most one jobs.list per second while events arrive
const STATUS_ORDER = ["SCHEDULED", "QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED",
  "CANCELED"];
const STATUS_CLASS = { SUCCEEDED: "ok", COMPLETED: "ok", IN_PROGRESS: "info", QUEUED: "", SCHEDULED: "off",
  FAILED: "error", TIMED_OUT: "error", REJECTED: "error", CANCELED: "warn", REMOVED: "off" };
const DOC_FIELDS = [["#dep-name", "package_name"], ["#dep-version", "version"], ["#dep-uri", "artifact_uri"],
  ["#dep-sha", "sha256"], ["#dep-sig", "signature"], ["#dep-kind", "kind"]];

const pill = (status, text = status) => el("span", { class: `pill ${STATUS_CLASS[status] ?? ""}`, text });
const intOf = (sel) => Math.trunc(Number($(sel).value));

export class DeployView {
  constructor(ctx) {
    this.ctx = ctx;
    this.jobs = new Map(); // job_id -> list item (status, counts, targets, description, created_at...)
    this.order = []; // job ids, newest first
    this.selected = ""; // job id shown in the progress card
    this.detail = null; // jobs.get of the selected job: {..., document, executions}
    this.execs = new Map(); // thing -> execution (selected job; live from events)
    this.picked = new Set();
    this.shown = new Set();
    this.extra = {}; // job document fields the form has no input for (kept from a pasted document)
    this.listError = "";
    this.listTimer = null;
    this.listKey = "";
    this.progressKey = "";
    this.busy = false;
    $("#dep-doc").addEventListener("input", () => this.fromDocument());
    $("#dep-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.start(); });
    $("#dep-all").addEventListener("click", () => this.pickAll(true));
    $("#dep-none").addEventListener("click", () => this.pickAll(false));
    $("#dep-refresh").addEventListener("click", () => this.loadList());
    $("#dep-cancel").addEventListener("click", () => this.cancel(this.selected));
    $("#dep-rollback-fleet").addEventListener("click", () => this.rollbackFleet());
    this.catalogue = []; // [{name, versions: [job document + size, pushed_at]}]
    $("#dep-cat-pkg").addEventListener("change", () => this.showVersions());
    $("#dep-cat-ver").addEventListener("change", () => this.pickVersion());
    $("#dep-cat-reload").addEventListener("click", () => this.loadCatalogue());
    ctx.client.subscribe(FLEET.jobsEvents, { queue_length: 1000 }, (m) => this.onEvent(m));
    ctx.client.addEventListener("state", (ev) => { if (ev.detail.state === "open") this.reload(); });
    if (ctx.client.connected) this.reload();
  }

  can(service) { return mayFleet(this.ctx.session, service[0]); }

  reload() {
    this.loadList();
    if (this.can(FLEET.jobsCatalogue)) this.loadCatalogue();
    if (this.selected) this.select(this.selected);
  }

  // ---------------------------------------------------------------- the form
  fromDocument() {
    const text = $("#dep-doc").value.trim();
    if (!text) { this.extra = {}; setText($("#dep-note"), ""); return; }
    try {
      const d = JSON.parse(text);
      if (!d || typeof d !== "object" || Array.isArray(d)) throw new Error("not an object");
      for (const [sel, key] of DOC_FIELDS) {
        const v = key === "package_name" ? d.package_name ?? d.name : d[key];
        if (typeof v === "string") $(sel).value = v;
      }
      const known = new Set([...DOC_FIELDS.map(([, k]) => k), "name", "operation"]);
      this.extra = Object.fromEntries(Object.entries(d).filter(([k]) => !known.has(k)));
      setText($("#dep-note"), "");
    } catch {
      setText($("#dep-note"), "job document: not a valid JSON object yet");
    }
  }

  // ---------------------------------------------------------------- the packages bucket
  async loadCatalogue() {
    setText($("#dep-cat-note"), "loading...");
    const r = await fleetCall(this.ctx.client, FLEET.jobsCatalogue, {});
    if (!r.ok) { setText($("#dep-cat-note"), `catalogue unavailable: ${r.error}`); return; }
    this.catalogue = r.values.packages || [];
    const keep = $("#dep-cat-pkg").value;
    $("#dep-cat-pkg").replaceChildren(el("option", { value: "", text: "package..." }),
      ...this.catalogue.map((p) => el("option", { value: p.name, text: `${p.name} (${p.versions.length})` })));
    if (this.catalogue.some((p) => p.name === keep)) $("#dep-cat-pkg").value = keep;
    this.showVersions();
    setText($("#dep-cat-note"), `${this.catalogue.length} packages${r.values.truncated ? " (listing truncated)" : ""}`);
  }

  showVersions() {
    const pkg = this.catalogue.find((p) => p.name === $("#dep-cat-pkg").value);
    $("#dep-cat-ver").replaceChildren(el("option", { value: "", text: "version..." }), ...(pkg?.versions || []).map((v) =>
      el("option", { value: v.version, text: v.pushed_at ? `${v.version} (pushed ${new Date(v.pushed_at * 1000).toLocaleDateString()})` : v.version })));
  }

  pickVersion() {
    const pkg = this.catalogue.find((p) => p.name === $("#dep-cat-pkg").value);
    const v = pkg?.versions.find((x) => x.version === $("#dep-cat-ver").value);
    if (!v) return;
    $("#dep-doc").value = "";
    this.extra = {};
    for (const [sel, key] of DOC_FIELDS) if (v[key]) $(sel).value = v[key];
    setText($("#dep-note"), v.kind ? "" : "pushed without a job document: check the kind");
  }

  document() {
    const doc = { operation: "deploy", ...this.extra };
    for (const [sel, key] of DOC_FIELDS) {
      const v = $(sel).value.trim();
      if (v) doc[key] = v;
    }
    return doc;
  }

  rollout() {
    return { canary: intOf("#dep-canary"), max_per_minute: intOf("#dep-rate"), abort_failures: intOf("#dep-abort"),
      abort_failure_pct: Number($("#dep-abort-pct").value) || 0 };
  }

  pickAll(on) {
    this.picked.clear();
    if (on) for (const r of this.ctx.robots.values()) if (this.online(r)) this.picked.add(r.id);
    for (const box of document.querySelectorAll("#dep-robots input")) box.checked = this.picked.has(box.value);
  }

  online(r) {
    if (r.registry) return r.registry.online;
    return performance.now() - r.lastSeen < 6000;
  }

  async start() {
    if (!this.picked.size) { toast("pick at least one robot", "bad"); return; }
    const doc = this.document();
    const targets = [...this.picked].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const body = {
      job_id: newId("console"), document: doc, targets, rollout: this.rollout(),
      timeout_s: Number($("#dep-timeout").value) || 600,
      retry: { failed: intOf("#dep-retry-failed") || 0, timed_out: intOf("#dep-retry-timeout") || 0 },
      description: $("#dep-desc").value.trim() || `deploy ${doc.package_name}@${doc.version}`,
    };
    await this.create(body, `${body.job_id}: ${doc.package_name}@${doc.version} to ${targets.length} robot(s)`);
  }

  async create(body, what) {
    this.busy = true;
    this.ctx.redraw(true);
    const r = await fleetCall(this.ctx.client, FLEET.jobsCreate, body, 15000);
    this.busy = false;
    if (!r.ok) {
      setText($("#dep-note"), `refused: ${r.error}`);
      toast(`job not created: ${r.error}`, "bad");
      this.ctx.redraw(true);
      return null;
    }
    setText($("#dep-note"), `created ${what}`);
    toast(`job ${r.values.job_id} created`, "good");
    this.remember(r.values);
    this.showDetail(r.values);
    this.scheduleList();
    return r.values;
  }

  async rollback(thing) {
    const pkg = this.detail?.document?.package_name;
    if (!pkg) { toast("this job's document names no package", "bad"); return; }
    if (!confirm(`Roll ${thing} back to its previous ${pkg}?`)) return;
    const body = {
      job_id: newId("rollback"), document: { operation: "rollback", package_name: pkg, to_version: "" },
      targets: [thing], rollout: { canary: 1, abort_failures: 1 }, description: `rollback ${pkg} on ${thing}`,
    };
    await this.create(body, `rollback of ${pkg} on ${thing}`);
  }

  /** The robots a failed or aborted deploy job changed (their execution succeeded), or none. */
  changedRobots(job = this.detail) {
    if (!job || job.status === "IN_PROGRESS" || (job.document?.operation ?? "deploy") !== "deploy") return [];
    const execs = [...this.execs.values()];
    const troubled = job.status === "CANCELED" || execs.some((ex) => ["FAILED", "TIMED_OUT", "REJECTED"].includes(ex.status));
    return troubled ? execs.filter((ex) => ex.status === "SUCCEEDED").map((ex) => ex.thing) : [];
  }

  async rollbackFleet() {
    const pkg = this.detail?.document?.package_name;
    const targets = this.changedRobots();
    if (!pkg || !targets.length) return;
    if (!confirm(`Roll ${targets.join(", ")} back to their previous ${pkg}?`)) return;
    const body = {
      job_id: newId("rollback"), document: { operation: "rollback", package_name: pkg, to_version: "" }, targets,
      rollout: { canary: 0, max_per_minute: 1000, abort_failures: 0 },
      description: `roll the fleet back after ${this.detail.job_id} (${pkg}@${this.detail.document.version})`,
    };
    await this.create(body, `rollback of ${pkg} on ${targets.length} robot(s)`);
  }

  async cancel(jobId) {
    if (!jobId || !confirm(`Cancel job ${jobId}? Robots that have not started it will not run it.`)) return;
    const r = await fleetCall(this.ctx.client, FLEET.jobsCancel,
      { job_id: jobId, reason: `canceled by ${this.ctx.session.user} from the console` });
    if (!r.ok) { toast(`cancel failed: ${r.error}`, "bad"); return; }
    toast(`job ${jobId} canceled`, "good");
    this.remember(r.values);
    if (jobId === this.selected) this.showDetail(r.values);
    this.scheduleList();
  }

  // ---------------------------------------------------------------- jobs list and progress
  async loadList() {
    const r = await fleetCall(this.ctx.client, FLEET.jobsList, { limit: LIST_LIMIT });
    if (!r.ok) {
      if (r.error !== "not connected" && r.error !== "connection lost") this.listError = r.error;
      this.ctx.redraw(true);
      return;
    }
    this.listError = "";
    const items = Array.isArray(r.values) ? r.values : Array.isArray(r.values?.jobs) ? r.values.jobs : [];
    this.jobs = new Map(items.map((j) => [j.job_id, j]));
    if (this.detail && !this.jobs.has(this.detail.job_id)) this.jobs.set(this.detail.job_id, this.detail);
    this.sortJobs();
    this.ctx.redraw(true);
  }

  scheduleList() {
    if (this.listTimer) return;
    this.listTimer = setTimeout(() => { this.listTimer = null; this.loadList(); }, LIST_REFRESH_MS);
  }

  sortJobs() {
    this.order = [...this.jobs.values()].sort((a, b) => (b.created_at || 0) - (a.created_at || 0)).map((j) => j.job_id);
    this.listKey = "";
  }

  remember(job) {
    const { executions, document: doc, ...item } = job;
    if (executions) item.counts = countsOf(executions);
    if (doc) Object.assign(item, { operation: doc.operation || "deploy", package_name: doc.package_name || "",
      version: doc.version || doc.to_version || "" });
    this.jobs.set(job.job_id, { ...this.jobs.get(job.job_id), ...item });
    this.sortJobs();
  }

  async select(jobId) {
    this.selected = jobId;
    this.progressKey = "";
    const r = await fleetCall(this.ctx.client, FLEET.jobsGet, { job_id: jobId });
    if (jobId !== this.selected) return;
    if (!r.ok) { toast(`job ${jobId}: ${r.error}`, "bad"); return; }
    this.showDetail(r.values);
  }

  showDetail(job) {
    this.selected = job.job_id;
    this.detail = job;
    this.execs = new Map((job.executions || []).map((ex) => [ex.thing, ex]));
    this.progressKey = "";
    this.listKey = "";
    this.ctx.redraw(true);
  }

  onEvent(ev) {
    if (!ev || typeof ev.job_id !== "string") return;
    if (ev.type === "execution") {
      if (ev.job_id === this.selected) {
        const cur = this.execs.get(ev.thing);
        if (!cur || ev.version >= cur.version || ev.last_updated_at >= cur.last_updated_at) {
          this.execs.set(ev.thing, ev);
          const item = this.jobs.get(ev.job_id);
          if (item) item.counts = countsOf([...this.execs.values()]);
          this.progressKey = "";
          this.listKey = "";
        }
      }
    } else if (ev.type === "job") {
      const { type, event, ...job } = ev;
      this.jobs.set(job.job_id, { ...this.jobs.get(job.job_id), ...job });
      if (job.job_id === this.selected && this.detail) this.detail = { ...this.detail, ...job };
      this.sortJobs();
    }
    this.scheduleList(); // counts of the other jobs
    this.ctx.redraw();
  }

  // ---------------------------------------------------------------- rendering
  render(now) {
    const connected = this.ctx.client.connected;
    const canCreate = this.can(FLEET.jobsCreate);
    const canCancel = this.can(FLEET.jobsCancel);
    this.renderPicker();
    for (const input of document.querySelectorAll("#dep-form input, #dep-form select, #dep-form textarea, #dep-form button")) {
      input.disabled = !canCreate;
    }
    $("#dep-start").disabled = !canCreate || !connected || this.busy;
    if (!canCreate) setText($("#dep-note"), `role ${this.ctx.session.role} may not start jobs (admin only)`);
    this.renderList(now, canCancel && connected);
    this.renderProgress(now, canCreate && connected, canCancel && connected);
  }

  renderPicker() {
    const box = $("#dep-robots");
    const ids = [...this.ctx.robots.keys()].filter((id) => !this.shown.has(id));
    for (const id of ids.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))) {
      this.shown.add(id);
      const input = el("input", { type: "checkbox", value: id });
      input.addEventListener("change", () => { if (input.checked) this.picked.add(id); else this.picked.delete(id); });
      box.append(el("label", { "data-robot": id }, input, id));
    }
    for (const label of box.children) {
      const r = this.ctx.robots.get(label.dataset.robot);
      label.classList.toggle("offline", !!r && !this.online(r));
    }
  }

  renderList(now, canCancel) {
    const key = `${this.order.join()}|${this.selected}|${canCancel}|${this.listError}|${Math.floor(Date.now() / 10000)}`;
    if (key === this.listKey) return;
    this.listKey = key;
    let active = 0;
    const rows = this.order.map((id) => {
      const j = this.jobs.get(id);
      if (j.status === "IN_PROGRESS") active += 1;
      const counts = j.counts || {};
      const cancel = el("button", { class: "btn small", text: "Cancel", onclick: (ev) => { ev.stopPropagation(); this.cancel(id); } });
      cancel.hidden = j.status !== "IN_PROGRESS";
      cancel.disabled = !canCancel;
      return el("tr", { "data-job": id, "data-status": j.status, class: id === this.selected ? "selected" : "",
        onclick: () => this.select(id) },
        el("td", { class: "mono", text: id, title: id }),
        el("td", { "data-col": "package", text: j.operation === "rollback" ? `rollback ${j.package_name}`
          : j.package_name ? `${j.package_name} ${j.version}` : "" }),
        el("td", { class: "msg", text: j.description || "" }),
        el("td", {}, pill(j.status, j.reason_code ? `${j.status} (${j.reason_code})` : j.status)),
        el("td", { class: "counts" }, ...STATUS_ORDER.filter((s) => counts[s]).map((s) => pill(s, `${counts[s]} ${s.toLowerCase()}`))),
        el("td", { text: j.created_at ? fmtAge(Date.now() - j.created_at * 1000) : "" }), el("td", {}, cancel));
    });
    $("#dep-jobs").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted",
      text: this.listError ? `jobs service unavailable: ${this.listError}` : "No jobs yet." }))]));
    setText($("#dep-jobs-summary"), this.listError ? "unavailable" : `${this.order.length} jobs · ${active} in progress`);
  }

  renderProgress(now, canCreate, canCancel) {
    const job = this.detail;
    const key = `${this.selected}|${job?.status}|${canCreate}|${canCancel}|${[...this.execs.values()].map((e) =>
      `${e.thing}/${e.status}/${e.version}/${e.last_updated_at}`).join()}`;
    if (key === this.progressKey) return;
    this.progressKey = key;
    const cancelBtn = $("#dep-cancel");
    cancelBtn.hidden = !job || job.status !== "IN_PROGRESS";
    cancelBtn.disabled = !canCancel;
    const back = $("#dep-rollback-fleet");
    const changed = this.changedRobots(job);
    back.hidden = !changed.length;
    back.disabled = !canCreate;
    back.textContent = `Roll the fleet back (${changed.length})`;
    if (!job) {
      setText($("#dep-job"), "");
      $("#dep-progress").replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted",
        text: "Start a job or pick one in the list to follow it per robot." })));
      return;
    }
    const d = job.document || {};
    const what = d.operation === "rollback" ? `rollback ${d.package_name}` : `${d.package_name ?? "?"}@${d.version ?? "?"}`;
    setText($("#dep-job"), `${job.job_id}: ${what} · ${job.status}${job.reason ? ` (${job.reason})` : ""}`);
    const order = new Map((job.targets || []).map((t, i) => [t, i]));
    const execs = [...this.execs.values()].sort((a, b) => (order.get(a.thing) ?? 0) - (order.get(b.thing) ?? 0));
    $("#dep-progress").replaceChildren(...execs.map((ex) => {
      const sd = ex.status_details || {};
      const pct = Math.round(100 * (ex.status === "SUCCEEDED" ? 1 : Math.max(0, Math.min(1, Number(sd.progress) || 0))));
      const rb = el("button", { class: "btn small", text: "Roll back", onclick: () => this.rollback(ex.thing) });
      rb.disabled = !canCreate || d.operation === "rollback" || !d.package_name;
      const detail = [sd.reason || ex.reason, sd.version && `version ${sd.version}`,
        sd.previous_version && `previous ${sd.previous_version}`].filter(Boolean).join(" · ");
      return el("tr", { "data-robot": ex.thing, "data-status": ex.status, "data-job": ex.job_id },
        el("td", { text: ex.thing + (ex.canary ? " (canary)" : "") }), el("td", {}, pill(ex.status)),
        el("td", { text: sd.step || "" }),
        el("td", {}, el("span", { class: "prog" }, el("i", { style: `width:${pct}%` })), ` ${pct} %`),
        el("td", { class: "msg", text: detail }), el("td", {}, rb));
    }));
  }
}

function countsOf(executions) {
  const out = {};
  for (const ex of executions) out[ex.status] = (out[ex.status] || 0) + 1;
  return out;
}
