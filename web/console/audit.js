// The audit trail: every command, service call, subscription and refusal ws_agent saw, kept by the
// control server (FLEET_AUDIT, searched through /fleet/audit/query, ops/audit_query.py). Filters: robot,
// user, operation, target (contains), verdict, time range; newest first. The built-in roles give the
// search to admin only (the trail names users and their addresses); the Audit tab is hidden for others.
import { mayFleet } from "../lib/session.js";
import { FLEET, fleetCall } from "../lib/fleet_api.js";
import { $, el, setText } from "../lib/util.js";

FLEET.auditQuery = ["/fleet/audit/query", "robot_platform/fleet/AuditQuery"];
const LIMIT = 500;

export class AuditView {
  constructor(ctx) {
    this.ctx = ctx;
    this.allowed = mayFleet(ctx.session, FLEET.auditQuery[0]);
    this.entries = [];
    this.searches = 0; // answered searches (browser tests wait on it)
    $("#nav-audit").hidden = !this.allowed;
    $("#au-search").addEventListener("click", () => this.search());
    for (const id of ["#au-op", "#au-verdict", "#au-since"]) $(id).addEventListener("input", () => this.search());
    for (const id of ["#au-robot", "#au-user", "#au-target"]) $(id).addEventListener("change", () => this.search());
  }

  open() { this.search(); }

  args() {
    const args = { since_s: Number($("#au-since").value), verdict: $("#au-verdict").value, limit: LIMIT };
    for (const [key, id] of [["robot", "#au-robot"], ["user", "#au-user"], ["op", "#au-op"], ["target", "#au-target"]]) {
      const v = $(id).value.trim();
      if (v) args[key] = v;
    }
    return args;
  }

  async search() {
    if (!this.allowed) { setText($("#au-status"), "your role may not search the audit trail"); return; }
    setText($("#au-status"), "searching...");
    const r = await fleetCall(this.ctx.client, FLEET.auditQuery, this.args());
    if (r.ok) {
      this.entries = r.values.entries || [];
      setText($("#au-status"), `${this.entries.length} events${r.values.truncated ? " (older ones not read)" : ""}`);
    } else {
      this.entries = [];
      setText($("#au-status"), `audit unavailable: ${r.error}`);
    }
    this.searches += 1;
    this.draw();
  }

  draw() {
    $("#au-rows").replaceChildren(...this.entries.map((e) => el("tr", { "data-op": e.op, "data-allowed": String(e.allowed) },
      el("td", { text: new Date(e.at * 1000).toLocaleString() }), el("td", { text: e.robot }),
      el("td", { text: e.role ? `${e.user} (${e.role})` : e.user }), el("td", { text: e.op }),
      el("td", { class: "msg", text: e.target }),
      el("td", { class: e.allowed ? "" : "sev-2", text: e.allowed ? "allowed" : `refused: ${e.reason}` }),
      el("td", { text: e.client }))));
  }
}
