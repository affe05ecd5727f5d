// The fleet registry on the console: records from /fleet/registry/list when the page connects and after
// every reconnect, then live from /fleet/registry/events (one full record per change). Each record lands
// on its robot's RobotModel (`robot.registry`, normalised by `normRecord`), so the fleet table shows
// presence, last seen, site, host and versions of robots that are silent too. Without a registry
// service (a plain fleet-mode agent) the page keeps working from telemetry alone and says so in a note,
// retrying now and then.
import { FLEET, fleetCall } from "../lib/fleet_api.js";

const RETRY_MS = 10000;
const TRANSIENT = new Set(["not connected", "connection lost"]);

/** One registry record in the console's shape (tolerates the flat shape and RobotRecord's `last`). */
export function normRecord(rec) {
  if (!rec || typeof rec !== "object") return null;
  const id = rec.robot_id ?? rec.id;
  if (typeof id !== "string") return null;
  const a = rec.last && typeof rec.last === "object" ? { ...rec.last, ...rec } : rec;
  const status = typeof rec.status === "string" ? rec.status : rec.online ? "online" : "offline";
  const num = (v) => (Number.isFinite(Number(v)) ? Number(v) : NaN);
  return {
    id, status, online: status === "online",
    site: String(a.site ?? ""), host: String(a.host ?? ""),
    software: String(a.software_version ?? ""),
    packages: a.packages && typeof a.packages === "object" ? a.packages : a.versions || {},
    capabilities: Array.isArray(a.capabilities) ? a.capabilities : [],
    uptime_s: num(a.uptime_s ?? a.uptime), first_seen: num(rec.first_seen), last_seen: num(rec.last_seen),
    announcements: num(rec.announcements),
  };
}

/** Is ``rec`` at least as new as ``cur``? (the list's snapshot may arrive after a newer event) */
function newer(rec, cur) {
  if (!cur) return true;
  if (rec.last_seen !== cur.last_seen) return !(rec.last_seen < cur.last_seen);
  return !(cur.status === "offline" && rec.status === "online"); // same announcement: offline came later
}

export class RegistryFeed {
  constructor(ctx) {
    this.ctx = ctx;
    this.available = null; // null: not asked yet, true: answered, false: failed (see .error)
    this.error = "";
    this.loading = false;
    this.loads = 0;
    this.events = 0;
    ctx.client.subscribe(FLEET.registryEvents, { queue_length: 500 }, (m) => this.onEvent(m));
    ctx.client.addEventListener("state", (ev) => { if (ev.detail.state === "open") this.load(); });
    setInterval(() => { if (this.available === false && ctx.client.connected) this.load(); }, RETRY_MS);
    if (ctx.client.connected) this.load();
  }

  async load() {
    if (this.loading) return;
    this.loading = true;
    const r = await fleetCall(this.ctx.client, FLEET.registryList, {});
    this.loading = false;
    if (!r.ok) {
      if (!TRANSIENT.has(r.error)) { this.available = false; this.error = r.error; }
      this.ctx.redraw(true);
      return;
    }
    const robots = Array.isArray(r.values?.robots) ? r.values.robots : Array.isArray(r.values) ? r.values : [];
    this.available = true;
    this.error = "";
    this.loads += 1;
    for (const rec of robots) this.apply(rec);
    this.ctx.redraw(true);
  }

  onEvent(msg) {
    this.events += 1;
    if (this.available !== true) this.load(); // the registry is back: fetch what we missed
    this.apply(msg);
  }

  apply(raw) {
    const rec = normRecord(raw);
    if (!rec) return;
    const robot = this.ctx.robot(rec.id);
    if (!robot || !newer(rec, robot.registry)) return;
    this.ctx.changed("registry", robot, () => robot.onRegistry(rec));
  }

  /** Text of the fleet view's note ("" when the registry answers). */
  note() {
    if (this.available === false) {
      return `Fleet registry unavailable (${this.error}): presence and versions from live telemetry only.`;
    }
    return "";
  }
}
