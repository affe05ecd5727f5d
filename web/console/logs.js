// Logs across the fleet: the history that matches the filters from /fleet/logs/query (the control
// server's FLEET_LOGS stream), then a live tail of /robots/*/logs filtered the same way here. The view
// keeps the last MAX_LINES lines, adds new ones once per animation frame (one DOM append per frame, the
// oldest lines removed in the same pass), and "Pause" holds new lines (bounded, drops counted) until
// "Follow" is pressed again. The live subscription exists only while the view is open.
import { FLEET, LOG_LEVELS, fleetCall, levelName } from "../lib/fleet_api.js";
import { $, el, setText } from "../lib/util.js";

const MAX_LINES = 2000; // lines kept in the view (oldest dropped)
const QUERY_LIMIT = 1000; // the query service's maximum
const LIVE_QUEUE = 1000; // ws_agent's per-subscription queue for the live tail (drop-oldest)
const QUERY_TIMEOUT_MS = 15000;
const FILTER_DEBOUNCE_MS = 250;

/** One log entry in the view's shape, or null (stamp may be seconds or a ROS time). */
export function normEntry(m, robotFromTopic = "") {
  if (!m || typeof m !== "object") return null;
  const st = m.stamp ?? m.time;
  const stamp = typeof st === "number" ? st : st && typeof st === "object" ? st.sec + (st.nanosec || 0) * 1e-9 : NaN;
  return {
    robot: String(m.robot ?? m.robot_id ?? robotFromTopic ?? ""), stamp, level: levelName(m.level),
    node: String(m.node ?? m.name ?? ""), msg: String(m.msg ?? ""), file: String(m.file ?? ""),
    function: String(m.function ?? ""), line: Number(m.line) || 0,
  };
}

const keyOf = (e) => `${e.robot}|${e.stamp}|${e.node}|${e.msg}`;
const pad = (n, w = 2) => String(n).padStart(w, "0");
function fmtStamp(s) {
  if (!Number.isFinite(s)) return "--:--:--.---";
  const d = new Date(s * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export class LogsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.isOpen = false;
    this.unsub = null;
    this.gen = 0; // the newest query; answers of older ones are ignored
    this.loading = false;
    this.held = []; // live entries that arrived while the history query ran
    this.incoming = []; // live entries not in the DOM yet (bounded)
    this.shown = 0; // lines in the DOM
    this.keys = new Set(); // keys of the history lines (live duplicates of them are skipped)
    this.paused = false;
    this.history = 0;
    this.live = 0;
    this.dropped = 0;
    this.error = "";
    this.robotOptions = new Set();
    this.filter = this.readFilters();
    let timer = null;
    for (const id of ["#l-robot", "#l-level", "#l-node", "#l-text", "#l-since"]) {
      $(id).addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => this.requery(), FILTER_DEBOUNCE_MS);
      });
    }
    $("#l-follow").addEventListener("click", () => this.setPaused(!this.paused));
    $("#l-clear").addEventListener("click", () => {
      $("#l-lines").replaceChildren();
      this.shown = 0;
      this.incoming = [];
      this.ctx.redraw();
    });
    ctx.client.addEventListener("state", (ev) => { if (ev.detail.state === "open" && this.isOpen) this.requery(); });
  }

  readFilters() {
    const text = $("#l-text").value.trim();
    let re = null;
    try {
      re = text ? new RegExp(text) : null;
    } catch {
      re = new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    }
    return {
      robot: $("#l-robot").value, level: $("#l-level").value, node: $("#l-node").value.trim(), text, re,
      sinceS: Number($("#l-since").value) || 3600,
    };
  }

  /** The live tail's filter (the query applies the same one on the server). */
  keep(e, f = this.filter) {
    return (!f.robot || e.robot === f.robot) && LOG_LEVELS.indexOf(e.level) >= LOG_LEVELS.indexOf(f.level)
      && (!f.node || e.node === f.node || e.node.includes(f.node)) && (!f.re || f.re.test(e.msg));
  }

  open() {
    if (this.isOpen) return;
    this.isOpen = true;
    this.unsub = this.ctx.client.subscribe(FLEET.logsLive, { queue_length: LIVE_QUEUE },
      (m, robot) => this.onLive(m, robot));
    this.requery();
  }

  close() {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.gen += 1;
    if (this.unsub) this.unsub();
    this.unsub = null;
  }

  setPaused(paused) {
    this.paused = paused;
    setText($("#l-follow"), paused ? "Follow" : "Pause");
    $("#l-follow").classList.toggle("primary", paused);
    this.ctx.redraw();
  }

  onLive(m, robot) {
    const e = normEntry(m, robot);
    if (!e || !this.keep(e)) return;
    e.src = "live";
    this.live += 1;
    if (this.loading) {
      this.held.push(e);
      if (this.held.length > MAX_LINES) { this.held.shift(); this.dropped += 1; }
      return;
    }
    if (this.keys.size && this.keys.has(keyOf(e))) return;
    this.push(e);
    this.ctx.redraw();
  }

  push(e) {
    this.incoming.push(e);
    if (this.incoming.length > MAX_LINES) { this.incoming.shift(); this.dropped += 1; }
  }

  async requery() {
    const gen = ++this.gen;
    this.filter = this.readFilters();
    const f = this.filter;
    this.loading = true;
    this.held = [];
    this.error = "";
    this.ctx.redraw();
    const args = { level: f.level, since_s: f.sinceS, limit: QUERY_LIMIT };
    if (f.robot) args.robot = f.robot;
    if (f.node) args.node = f.node;
    if (f.text) args.grep = f.text;
    const r = await fleetCall(this.ctx.client, FLEET.logsQuery, args, QUERY_TIMEOUT_MS);
    if (gen !== this.gen) return; // filters changed meanwhile (or the view closed)
    this.loading = false;
    let entries = [];
    if (r.ok) {
      const raw = Array.isArray(r.values?.entries) ? r.values.entries : Array.isArray(r.values) ? r.values : [];
      entries = raw.map((m) => normEntry(m)).filter((e) => e && this.keep(e));
      for (const e of entries) e.src = "history";
    } else {
      this.error = r.error;
    }
    this.history = entries.length;
    this.keys = new Set(entries.map(keyOf));
    $("#l-lines").replaceChildren();
    this.shown = 0;
    this.incoming = [];
    for (const e of entries) this.push(e);
    for (const e of this.held) if (!this.keys.has(keyOf(e))) this.push(e);
    this.held = [];
    this.flush(true);
    this.ctx.redraw();
  }

  line(e) {
    const row = el("div", { class: `ln lv-${e.level}`, "data-robot": e.robot, "data-level": e.level, "data-src": e.src },
      el("span", { class: "t", text: fmtStamp(e.stamp) }), el("span", { class: "r", text: e.robot }),
      el("span", { class: "l", text: e.level.toUpperCase() }), el("span", { class: "n", text: `[${e.node}]` }),
      el("span", { class: "m", text: e.msg }));
    const where = e.file ? `${e.file}:${e.line}${e.function ? ` (${e.function})` : ""}` : "";
    row.title = `${Number.isFinite(e.stamp) ? new Date(e.stamp * 1000).toISOString() : "no time"} ${where}`;
    return row;
  }

  /** Move what waits in `incoming` to the DOM (one append, oldest lines removed). */
  flush(force = false) {
    if ((this.paused && !force) || !this.incoming.length) return;
    const box = $("#l-lines");
    const batch = this.incoming.length > MAX_LINES ? this.incoming.slice(-MAX_LINES) : this.incoming;
    this.incoming = [];
    const frag = document.createDocumentFragment();
    for (const e of batch) frag.append(this.line(e));
    box.append(frag);
    this.shown += batch.length;
    while (this.shown > MAX_LINES && box.firstChild) { box.firstChild.remove(); this.shown -= 1; }
    if (!this.paused) box.scrollTop = box.scrollHeight;
  }

  render() {
    for (const r of this.ctx.robots.values()) {
      if (this.robotOptions.has(r.id)) continue;
      this.robotOptions.add(r.id);
      const opts = [...$("#l-robot").options].slice(1);
      const before = opts.find((o) => o.value.localeCompare(r.id, undefined, { numeric: true }) > 0) || null;
      $("#l-robot").insertBefore(el("option", { value: r.id, text: r.id }), before);
    }
    this.flush();
    const parts = [this.loading ? "loading history..." : this.error ? `history unavailable: ${this.error}`
      : `${this.history} from history`, `${this.live} live`, `${this.shown} shown (last ${MAX_LINES} kept)`];
    if (this.paused) parts.push(`paused: ${this.incoming.length} new lines waiting`);
    if (this.dropped) parts.push(`${this.dropped} dropped`);
    setText($("#l-status"), parts.join(" · "));
    $("#l-status").className = this.error ? "sev-2" : "muted";
  }
}
