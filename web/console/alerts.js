// Alert workflow across the fleet. Active alerts come live from /robots/*/alerts (and each robot's health
// tree); the history is the control server's (/fleet/alerts/query over FLEET_EVENTS, see
// ops/alert_history.py), so it shows alerts raised before this page was opened, with their own raise time.
// Acknowledge (one, or every selected one, with a note) and silence (one check, or a whole robot for
// maintenance: check "*", with a duration and a reason) go to the robot's health_monitor_tree as the
// operator requests /robots/<id>/health/ack|silence; ws_agent stamps them with the logged-in user, and
// the history shows who did what and when. Critical alerts can ring (local alarm.wav) and raise a browser
// notification: opt-in, kept per user in this browser.
import { subjectMatches } from "../lib/session.js";
import { alertAgeMs } from "../lib/robot_model.js";
import { $, el, fmtAge, setText, toast, SEVERITY } from "../lib/util.js";
import { AlertHistoryView } from "./alert_history.js";

const ACK = ["/health/ack", "robot_platform/health/Acknowledge"];
const SILENCE = ["/health/silence", "robot_platform/health/Silence"];
const NOTIFY_KEY = "rp.notify.";
const CRITICAL = 3;

/** The check an alert comes from (Alert.source is "<node>/<check>"). */
export const checkOf = (a) => a.values?.check || String(a.source || "").split("/").pop() || "";

export class AlertsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.key = "";
    this.robotOptions = new Set();
    this.selected = new Set(); // "robot/alert_id"
    this.seenCritical = new Set(); // alert ids already announced (or raised before the page opened)
    this.openedAt = Date.now();
    this.notified = []; // {robot, code, sound, notification}: read by the browser tests
    this.alarm = new Audio("alarm.wav");
    this.history = new AlertHistoryView(ctx);
    for (const id of ["#a-robot", "#a-sev", "#a-text", "#a-unacked"]) {
      $(id).addEventListener("input", () => { this.key = ""; ctx.redraw(); });
    }
    for (const id of ["#a-robot", "#a-sev"]) $(id).addEventListener("input", () => this.history.search());
    $("#a-all").addEventListener("change", (ev) => this.selectAll(ev.target.checked));
    $("#a-ack-selected").addEventListener("click", () => this.acknowledgeSelected());
    $("#a-silence").addEventListener("click", () => this.silence());
    const notify = $("#a-notify");
    notify.checked = this.notifyOn();
    notify.addEventListener("change", () => this.setNotify(notify.checked));
    const canAct = this.canAct("*");
    $("#a-actions").hidden = !canAct;
    $("#a-all").hidden = !canAct;
    ctx.listeners.add((kind, robot) => { if (kind === "alerts") this.watch(robot); });
    ctx.client.addEventListener("state", (ev) => { if (ev.detail.state === "open") this.history.search(); });
    if (ctx.client.connected) this.history.search();
  }

  /** May this user acknowledge and silence on ``robotId`` (the agent's rule subject robots.<id>.health.ack)? */
  canAct(robotId) {
    return (this.ctx.session.rules?.call || []).some((p) => subjectMatches(p, `robots.${robotId}.health.ack`));
  }

  filters() {
    return { robot: $("#a-robot").value, sev: Number($("#a-sev").value), text: $("#a-text").value.trim().toLowerCase(),
      unacked: $("#a-unacked").checked };
  }

  keep(a, f, robotId) {
    return (!f.robot || robotId === f.robot) && a.severity >= f.sev && (!f.unacked || !a.acknowledged)
      && (!f.text || `${a.code} ${a.message}`.toLowerCase().includes(f.text));
  }

  // ---------------------------------------------------------------- operator requests
  async request(robotId, [name, type], args) {
    const r = await this.ctx.client.callService(`/robots/${robotId}${name}`, type, args);
    if (r.ok && r.values?.success) return { ok: true, message: r.values.message };
    return { ok: false, message: r.ok ? r.values?.message || "refused" : r.error };
  }

  async acknowledge(robotId, alert) {
    const r = await this.request(robotId, ACK, { alert_id: alert.alert_id, note: $("#a-note").value.trim() });
    if (r.ok) {
      this.ctx.robots.get(robotId)?.markAcknowledged(alert.alert_id, this.ctx.session.user);
      this.selected.delete(`${robotId}/${alert.alert_id}`);
      toast(`${robotId}: ${alert.code} acknowledged`, "good");
    } else {
      toast(`${robotId}: acknowledge failed: ${r.message}`, "bad");
    }
    this.key = "";
    this.ctx.redraw(true);
    this.history.soon();
    return r.ok;
  }

  async acknowledgeSelected() {
    const picked = [...this.selected].map((k) => k.split("/")).map(([robotId, id]) =>
      [robotId, this.ctx.robots.get(robotId)?.alerts.get(id)]).filter(([, a]) => a && !a.acknowledged);
    if (!picked.length) { toast("no unacknowledged alert selected", "bad"); return; }
    const results = await Promise.all(picked.map(([robotId, a]) => this.acknowledge(robotId, a)));
    const ok = results.filter(Boolean).length;
    toast(`${ok} of ${picked.length} alerts acknowledged`, ok === picked.length ? "good" : "bad");
  }

  /** Silence the check in the form (empty: every check of the robot, for maintenance). */
  async silence(robotId = $("#a-sil-robot").value, check = $("#a-sil-check").value.trim() || "*") {
    const reason = $("#a-note").value.trim();
    const duration = Number($("#a-sil-dur").value);
    if (!robotId) { toast("pick a robot to silence", "bad"); return false; }
    if (duration > 0 && !reason) { toast("a silence needs a reason (note / reason field)", "bad"); return false; }
    const what = check === "*" ? `all checks of ${robotId}` : `${robotId} ${check}`;
    const r = await this.request(robotId, SILENCE, { check, duration_s: duration, reason });
    toast(r.ok ? `${what}: ${r.message}` : `${what}: silence failed: ${r.message}`, r.ok ? "good" : "bad");
    this.history.soon();
    return r.ok;
  }

  selectAll(on) {
    this.selected.clear();
    if (on) for (const tr of document.querySelectorAll("#a-active tr")) this.selected.add(`${tr.dataset.robot}/${tr.dataset.alert}`);
    this.key = "";
    this.ctx.redraw(true);
  }

  // ---------------------------------------------------------------- critical alerts: sound + notification
  notifyOn() {
    try { return localStorage.getItem(NOTIFY_KEY + this.ctx.session.user) === "1"; } catch { return false; }
  }

  async setNotify(on) {
    try { localStorage.setItem(NOTIFY_KEY + this.ctx.session.user, on ? "1" : "0"); } catch { /* private mode */ }
    if (on && typeof Notification !== "undefined" && Notification.permission === "default") {
      await Notification.requestPermission().catch(() => "denied");
    }
  }

  announce(robot, a) {
    this.seenCritical.add(a.alert_id);
    if (!this.notifyOn()) return;
    const entry = { robot: robot.id, code: a.code, sound: "pending", notification: "none" };
    this.notified.push(entry);
    this.alarm.currentTime = 0;
    this.alarm.play().then(() => { entry.sound = "played"; }, (e) => { entry.sound = `blocked: ${e.name}`; });
    if (typeof Notification !== "undefined" && Notification.permission === "granted") {
      const n = new Notification(`${robot.id}: ${a.code}`, { body: a.message, tag: a.alert_id, requireInteraction: true });
      n.onclick = () => { window.focus(); location.hash = "#/alerts"; };
      entry.notification = "shown";
    }
  }

  /** Called on every alert message (any view): a critical alert raised after the page opened announces
   * itself once; one raised before (the page just learnt of it) does not ring. */
  watch(robot) {
    for (const a of robot.alerts.values()) {
      if (a.severity < CRITICAL || a.acknowledged || this.seenCritical.has(a.alert_id)) continue;
      if (Number.isFinite(a.raisedAt) && a.raisedAt * 1000 < this.openedAt - 1000) this.seenCritical.add(a.alert_id);
      else this.announce(robot, a);
    }
  }

  // ---------------------------------------------------------------- drawing
  render(now) {
    const f = this.filters();
    const robots = [...this.ctx.robots.values()];
    for (const r of robots) {
      if (!this.robotOptions.has(r.id)) {
        this.robotOptions.add(r.id);
        $("#a-robot").append(el("option", { value: r.id, text: r.id }));
        $("#a-sil-robot").append(el("option", { value: r.id, text: r.id }));
      }
    }
    const active = [];
    for (const r of robots) for (const a of r.alerts.values()) if (this.keep(a, f, r.id)) active.push([r, a]);
    active.sort((x, y) => y[1].severity - x[1].severity || x[0].id.localeCompare(y[0].id, undefined, { numeric: true }));
    const key = `${active.map(([r, a]) => `${r.id}/${a.alert_id}/${a.acknowledged}`).join()}|${[...this.selected]}|${
      Math.floor(now / 5000)}|${this.ctx.client.connected}`;
    setText($("#a-active-count"), String(active.length));
    this.history.render();
    if (key === this.key) return;
    this.key = key;
    $("#a-active").replaceChildren(...active.map(([r, a]) => this.row(r, a, now)));
  }

  row(r, a, now) {
    const canAct = this.canAct(r.id);
    const ack = el("button", { class: "btn small", text: "Acknowledge", "data-alert": a.alert_id, "data-action": "ack" });
    ack.disabled = a.acknowledged || !this.ctx.client.connected;
    ack.hidden = !canAct;
    ack.addEventListener("click", () => this.acknowledge(r.id, a));
    const mute = el("button", { class: "btn small", text: "Silence check", "data-action": "silence",
      title: "silence this check for the duration and reason in the toolbar" });
    mute.hidden = !canAct || !checkOf(a);
    mute.addEventListener("click", () => this.silence(r.id, checkOf(a)));
    const key = `${r.id}/${a.alert_id}`;
    const pick = el("input", { type: "checkbox", "aria-label": `select ${a.code} on ${r.id}` });
    pick.checked = this.selected.has(key);
    pick.hidden = !canAct;
    pick.addEventListener("change", () => { if (pick.checked) this.selected.add(key); else this.selected.delete(key); });
    return el("tr", { "data-robot": r.id, "data-code": a.code, "data-alert": a.alert_id },
      el("td", {}, pick), el("td", { text: r.id }),
      el("td", { class: `sev-${a.severity}`, text: SEVERITY[a.severity] || a.severity }),
      el("td", { text: a.code }), el("td", { class: "msg", text: a.message }),
      el("td", { text: fmtAge(alertAgeMs(a, now)), "data-col": "since",
        title: Number.isFinite(a.raisedAt) ? `raised ${new Date(a.raisedAt * 1000).toLocaleString()}` : "first seen by this page" }),
      el("td", { text: a.acknowledged ? a.acknowledged_by || "yes" : "no" }), el("td", { class: "row" }, ack, mute));
  }
}
