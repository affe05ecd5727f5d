// The alert history as the control server keeps it: /fleet/alerts/query (fleet_registry over the hub's
// FLEET_EVENTS stream, ops/alert_history.py). One row per alert with its own raise time, who acknowledged
// it when (and the note), when it cleared, and for SILENCED.* records who silenced which check until when
// and why. Filters: robot and minimum severity (the view's toolbar), state, code (exact or PREFIX*) and time
// range. Searched on open, on every filter change, after each acknowledge/silence, and (at most every few
// seconds) when an alert message arrives. Roles that may export get an "Export" button per row: one MCAP
// file of ±N minutes around the alert (alert_export.js).
import { FLEET, fleetCall } from "../lib/fleet_api.js";
import { canExport, clampMinutes, exportAlert } from "./alert_export.js";
import { $, el, setText, SEVERITY } from "../lib/util.js";

FLEET.alertsQuery = ["/fleet/alerts/query", "robot_platform/fleet/AlertsQuery"];
const LIMIT = 300;
const FOLLOW_MS = 3000;
const when = (s) => (Number.isFinite(s) && s > 0 ? new Date(s * 1000).toLocaleString() : "");

export class AlertHistoryView {
  constructor(ctx) {
    this.ctx = ctx;
    this.rows = []; // the last answer's alerts
    this.dirty = false;
    this.busy = false;
    this.again = false;
    this.timer = null;
    this.searches = 0; // answered searches (browser tests wait on it)
    this.exports = 0; // finished downloads (browser tests wait on it)
    this.exporting = false;
    this.mayExport = canExport(ctx.session);
    $("#h-export-box").hidden = !this.mayExport;
    for (const id of ["#h-state", "#h-since"]) $(id).addEventListener("input", () => this.search());
    $("#h-code").addEventListener("change", () => this.search());
    $("#h-search").addEventListener("click", () => this.search());
    ctx.listeners.add((kind) => { if (kind === "alerts") this.soon(); });
  }

  args() {
    const args = { since_s: Number($("#h-since").value), state: $("#h-state").value, limit: LIMIT,
      severity: Number($("#a-sev").value) };
    if ($("#a-robot").value) args.robot = $("#a-robot").value;
    const code = $("#h-code").value.trim();
    if (code) args.code = code;
    return args;
  }

  /** Search again in a moment (coalesces bursts of alert messages). */
  soon() {
    if (this.timer) return;
    this.timer = setTimeout(() => { this.timer = null; this.search(); }, FOLLOW_MS);
  }

  async search() {
    if (this.busy) { this.again = true; return; }
    if (!this.ctx.client.connected) return;
    this.busy = true;
    setText($("#h-status"), "searching...");
    try {
      const r = await fleetCall(this.ctx.client, FLEET.alertsQuery, this.args());
      if (r.ok) {
        this.rows = r.values.alerts || [];
        setText($("#h-status"), `${this.rows.length} alerts${r.values.truncated ? " (older ones not read)" : ""}`);
      } else {
        setText($("#h-status"), `history unavailable: ${r.error}`);
      }
      this.searches += 1;
      this.dirty = true;
      this.ctx.redraw(true);
    } finally {
      this.busy = false;
      if (this.again) { this.again = false; this.search(); }
    }
  }

  render() {
    if (!this.dirty) return;
    this.dirty = false;
    $("#a-history").replaceChildren(...this.rows.map((a) => {
      const v = a.values || {};
      const silence = a.code.startsWith("SILENCED.")
        ? `${v.check || ""} by ${v.by || "?"} until ${when(Number(v.until))}${v.reason ? ` (${v.reason})` : ""}` : "";
      const acked = a.acknowledged_by
        ? `${a.acknowledged_by} ${when(a.acknowledged_at)}${v.ack_note ? ` (${v.ack_note})` : ""}` : "";
      const state = a.active ? "active" : `cleared ${when(a.cleared_at)}`;
      return el("tr", { "data-robot": a.robot, "data-code": a.code, "data-alert": a.alert_id },
        el("td", { text: when(a.raised_at), "data-col": "raised" }), el("td", { text: a.robot }),
        el("td", { class: `sev-${a.severity}`, text: SEVERITY[a.severity] || a.severity }),
        el("td", { text: a.code }), el("td", { class: "msg", text: a.message }),
        el("td", { text: state, "data-col": "state" }), el("td", { text: acked, "data-col": "ack" }),
        el("td", { class: "msg", text: silence, "data-col": "silence" }), el("td", {}, this.exportButton(a)));
    }));
  }

  exportButton(a) {
    if (!this.mayExport) return "";
    const minutes = () => clampMinutes($("#h-minutes").value);
    return el("button", { class: "btn small", text: "Export", "data-action": "export", "data-testid": "export-alert",
      title: "download an MCAP file of this alert, the robot's other alerts, logs and telemetry around it",
      onclick: () => this.download(a, minutes()) });
  }

  async download(a, minutes) {
    const status = $("#h-export-status");
    if (this.exporting) { setText(status, "an export is running; wait for it"); return; }
    this.exporting = true;
    $("#h-minutes").value = String(minutes);
    setText(status, `exporting ${a.code} on ${a.robot} ±${minutes} min...`);
    try {
      const r = await exportAlert(this.ctx.session, a.alert_id, minutes, (text) => setText(status, text));
      const notes = r.notes.length ? ` - ${r.notes.join("; ")}` : "";
      setText(status, `saved ${r.name} (${Math.round(r.bytes / 1024)} KiB)${notes}`);
      this.exports += 1;
    } catch (e) {
      setText(status, `export failed: ${e.message || e}`);
    } finally {
      this.exporting = false;
    }
  }
}
