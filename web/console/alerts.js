// Alert feed across the fleet: active alerts (acknowledge) and the history of raise/clear/ack events
// seen by this page, filtered by robot, severity, text and acknowledgement.
import { may } from "../lib/session.js";
import { alertAgeMs } from "../lib/robot_model.js";
import { $, el, fmtAge, setText, toast, SEVERITY } from "../lib/util.js";

const HISTORY_SHOWN = 300;
const ACK_SERVICE = ["/health_monitor_tree/acknowledge_alert", "robot_platform_interfaces/srv/AcknowledgeAlert"];

export class AlertsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.key = "";
    this.robotOptions = new Set();
    for (const id of ["#a-robot", "#a-sev", "#a-text", "#a-unacked"]) {
      $(id).addEventListener("input", () => { this.key = ""; ctx.redraw(); });
    }
  }

  filters() {
    return { robot: $("#a-robot").value, sev: Number($("#a-sev").value), text: $("#a-text").value.trim().toLowerCase(),
      unacked: $("#a-unacked").checked };
  }

  keep(a, f, robotId) {
    return (!f.robot || robotId === f.robot) && a.severity >= f.sev && (!f.unacked || !a.acknowledged)
      && (!f.text || `${a.code} ${a.message}`.toLowerCase().includes(f.text));
  }

  async acknowledge(robotId, alert) {
    const r = await this.ctx.client.callService(`/robots/${robotId}${ACK_SERVICE[0]}`, ACK_SERVICE[1],
      { alert_id: alert.alert_id, user: this.ctx.session.user });
    if (r.ok && r.values?.success) {
      this.ctx.robots.get(robotId)?.markAcknowledged(alert.alert_id, this.ctx.session.user);
      toast(`${robotId}: ${alert.code} acknowledged`, "good");
    } else {
      toast(`${robotId}: acknowledge failed: ${r.ok ? r.values?.message : r.error}`, "bad");
    }
    this.key = "";
    this.ctx.redraw(true);
  }

  render(now) {
    const f = this.filters();
    const robots = [...this.ctx.robots.values()];
    for (const r of robots) {
      if (!this.robotOptions.has(r.id)) {
        this.robotOptions.add(r.id);
        $("#a-robot").append(el("option", { value: r.id, text: r.id }));
      }
    }
    const active = [], history = [];
    for (const r of robots) {
      for (const a of r.alerts.values()) if (this.keep(a, f, r.id)) active.push([r, a]);
      for (const h of r.history) if (this.keep(h, f, r.id)) history.push([r, h]);
    }
    active.sort((x, y) => y[1].severity - x[1].severity || x[0].id.localeCompare(y[0].id, undefined, { numeric: true }));
    history.sort((x, y) => y[1].received - x[1].received);
    const key = `${active.map(([r, a]) => `${r.id}/${a.alert_id}/${a.acknowledged}`).join()}|${history.length}|${
      history[0]?.[1].received}|${Math.floor(now / 5000)}|${this.ctx.client.connected}`;
    setText($("#a-active-count"), String(active.length));
    if (key === this.key) return;
    this.key = key;
    const canAck = (id) => may(this.ctx.session, "call", id, ACK_SERVICE[0]);
    $("#a-active").replaceChildren(...active.map(([r, a]) => {
      const btn = el("button", { class: "btn small", text: "Acknowledge", "data-alert": a.alert_id });
      btn.disabled = a.acknowledged || !this.ctx.client.connected;
      btn.hidden = !canAck(r.id);
      btn.addEventListener("click", () => this.acknowledge(r.id, a));
      return el("tr", { "data-robot": r.id, "data-code": a.code },
        el("td", { text: r.id }), el("td", { class: `sev-${a.severity}`, text: SEVERITY[a.severity] || a.severity }),
        el("td", { text: a.code }), el("td", { class: "msg", text: a.message }),
        el("td", { text: fmtAge(alertAgeMs(a, now)), "data-col": "since",
          title: Number.isFinite(a.raisedAt) ? `raised ${new Date(a.raisedAt * 1000).toLocaleString()}` : "first seen by this page" }),
        el("td", { text: a.acknowledged ? a.acknowledged_by || "yes" : "no" }), el("td", {}, btn));
    }));
    $("#a-history").replaceChildren(...history.slice(0, HISTORY_SHOWN).map(([r, h]) => el("tr", {},
      el("td", { text: new Date(h.received).toLocaleTimeString() }), el("td", { text: r.id }),
      el("td", { text: h.active ? (h.acknowledged ? "acknowledged" : "raised") : "cleared" }),
      el("td", { class: `sev-${h.severity}`, text: SEVERITY[h.severity] || h.severity }),
      el("td", { text: h.code }), el("td", { class: "msg", text: h.message }))));
  }
}
