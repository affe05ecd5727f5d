// Site map: every robot on one map of the site. A robot's odometry starts where it was switched on, so
// the agent's GET /site names where each robot's odom frame sits on the site (x, y, yaw: the same
// numbers as nats_bridge's mirror.origins for RViz) and, optionally, a floor plan image with its scale
// (m per pixel) and the site position of its bottom-left corner. Robots are coloured by state and
// alerts; a click opens the robot. Plain canvas, no library.
import { $, el, setText } from "../lib/util.js";

const REDRAW_MS = 100; // at most 10 Hz (odometry comes at 2 Hz per robot in the fleet view)
const MARKER_PX = 9;
const HIT_PX = 16;
const MIN_SPAN_M = 10;
const MARGIN = 0.08;

/** Where a robot is on the site: its origin (x, y, yaw) composed with its odometry pose. */
export function sitePose(origin, odom) {
  const [ox, oy, oyaw] = origin || [0, 0, 0];
  const c = Math.cos(oyaw), s = Math.sin(oyaw);
  return { x: ox + c * odom.x - s * odom.y, y: oy + s * odom.x + c * odom.y, theta: oyaw + odom.theta };
}

/** The colour class of a robot on the map, most urgent first. */
export function siteState(robot, online) {
  if (!online) return "offline";
  const mode = robot.mode;
  if (mode === "estop" || mode === "fault" || robot.maxSeverity >= 2) return "error";
  if (mode === "paused" || robot.maxSeverity >= 1) return "warn";
  return mode === "moving" ? "moving" : "ok";
}

export class SiteView {
  constructor(ctx, presence) {
    this.ctx = ctx;
    this.presence = presence; // (robot, now) -> {online}
    this.canvas = $("#site-canvas");
    this.config = null; // GET /site
    this.error = "";
    this.plan = null; // HTMLImageElement once loaded
    this.markers = []; // [{id, x, y, theta, px, py, state, origin}] as last drawn (tests read it)
    this.drawnAt = 0;
    this.canvas.addEventListener("click", (ev) => this.click(ev));
    this.canvas.addEventListener("mousemove", (ev) => {
      this.canvas.style.cursor = this.hit(ev) ? "pointer" : "default";
    });
  }

  /** Loads the site map once; after a failure (agent restarting...) the next visit of the view retries. */
  async open() {
    if ((this.config && !this.error) || this.loading) return;
    this.loading = true;
    try {
      const auth = this.ctx.session.token ? { Authorization: `Bearer ${this.ctx.session.token}` } : {};
      const resp = await fetch("/site", { headers: auth, cache: "no-store" });
      if (!resp.ok) throw new Error(`GET /site answered ${resp.status}`);
      this.config = await resp.json();
      const fp = this.config.floor_plan;
      if (fp) {
        const img = await fetch(fp.url, { headers: auth, cache: "no-store" });
        if (!img.ok) throw new Error(`floor plan: ${img.status}`);
        const image = new Image();
        image.src = URL.createObjectURL(await img.blob());
        await image.decode();
        this.plan = image;
      }
      this.error = "";
    } catch (e) {
      this.error = String(e.message || e);
      this.config = this.config || { name: "", origins: {}, floor_plan: null };
    } finally {
      this.loading = false;
    }
    this.ctx.redraw(true);
  }

  hit(ev) {
    const r = this.canvas.getBoundingClientRect();
    const x = ev.clientX - r.left, y = ev.clientY - r.top;
    let best = null, bestD = HIT_PX;
    for (const m of this.markers) {
      const d = Math.hypot(m.px - x, m.py - y);
      if (d < bestD) { best = m; bestD = d; }
    }
    return best;
  }

  click(ev) {
    const m = this.hit(ev);
    if (m) location.hash = `#/robot/${m.id}`;
  }

  /** World bounds: the floor plan if there is one, grown to every robot, at least MIN_SPAN_M wide. */
  bounds(poses) {
    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    const grow = (x, y) => { minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y); };
    const fp = this.config?.floor_plan;
    if (fp && this.plan) {
      grow(fp.origin[0], fp.origin[1]);
      grow(fp.origin[0] + this.plan.naturalWidth * fp.resolution, fp.origin[1] + this.plan.naturalHeight * fp.resolution);
    }
    for (const p of poses) grow(p.x, p.y);
    if (!Number.isFinite(minX)) { minX = minY = 0; maxX = maxY = 0; }
    const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
    const spanX = Math.max(maxX - minX, MIN_SPAN_M), spanY = Math.max(maxY - minY, MIN_SPAN_M);
    return { cx, cy, spanX: spanX * (1 + 2 * MARGIN), spanY: spanY * (1 + 2 * MARGIN) };
  }

  render(now) {
    if (now - this.drawnAt < REDRAW_MS) {
      if (!this.pending) this.pending = setTimeout(() => { this.pending = null; this.ctx.redraw(); }, REDRAW_MS);
      return;
    }
    this.drawnAt = now;
    const cfg = this.config || { origins: {} };
    const robots = [...this.ctx.robots.values()];
    const poses = [], unplaced = [], noOrigin = [];
    for (const r of robots) {
      if (!r.odom) { unplaced.push(r.id); continue; }
      const origin = cfg.origins?.[r.id];
      if (!origin) noOrigin.push(r.id);
      poses.push({ r, origin: origin || [0, 0, 0], ...sitePose(origin, r.odom) });
    }
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(`--${name}`).trim();
    const b = this.bounds(poses);
    const scale = Math.min(w / b.spanX, h / b.spanY);
    const px = (x) => w / 2 + (x - b.cx) * scale, py = (y) => h / 2 - (y - b.cy) * scale;
    const fp = cfg.floor_plan;
    if (fp && this.plan) {
      const x0 = px(fp.origin[0]), y1 = py(fp.origin[1]);
      const iw = this.plan.naturalWidth * fp.resolution * scale, ih = this.plan.naturalHeight * fp.resolution * scale;
      g.drawImage(this.plan, x0, y1 - ih, iw, ih);
    }
    // 1 m grid (5 m when zoomed out), drawn over the plan lightly.
    const step = scale < 12 ? 5 : 1;
    g.strokeStyle = color("grid"); g.lineWidth = 1;
    for (let x = Math.floor((b.cx - b.spanX) / step) * step; x < b.cx + b.spanX; x += step) {
      g.beginPath(); g.moveTo(px(x), 0); g.lineTo(px(x), h); g.stroke();
    }
    for (let y = Math.floor((b.cy - b.spanY) / step) * step; y < b.cy + b.spanY; y += step) {
      g.beginPath(); g.moveTo(0, py(y)); g.lineTo(w, py(y)); g.stroke();
    }
    g.font = "13px system-ui, sans-serif";
    const stateColor = { offline: color("stale"), error: color("error"), warn: color("warn"), moving: color("info"), ok: color("ok") };
    this.markers = poses.map((p) => {
      const state = siteState(p.r, this.presence(p.r, now).online);
      const x = px(p.x), y = py(p.y);
      g.fillStyle = stateColor[state];
      g.strokeStyle = color("text");
      g.beginPath(); g.arc(x, y, MARKER_PX, 0, 2 * Math.PI); g.fill(); g.stroke();
      g.beginPath(); g.moveTo(x, y);
      g.lineTo(x + Math.cos(p.theta) * MARKER_PX * 2, y - Math.sin(p.theta) * MARKER_PX * 2); g.stroke();
      g.fillStyle = color("text");
      g.fillText(p.r.id, x + MARKER_PX + 4, y - MARKER_PX);
      return { id: p.r.id, x: p.x, y: p.y, theta: p.theta, px: x, py: y, state, origin: p.origin };
    });
    // scale bar
    const barM = step * (scale * step < 40 ? 5 : 1);
    g.strokeStyle = color("text"); g.fillStyle = color("text"); g.lineWidth = 2;
    g.beginPath(); g.moveTo(12, h - 14); g.lineTo(12 + barM * scale, h - 14); g.stroke();
    g.fillText(`${barM} m`, 16 + barM * scale, h - 10);
    const notes = [];
    if (this.error) notes.push(`site map: ${this.error}`);
    if (noOrigin.length) notes.push(`no origin configured for ${noOrigin.join(", ")}: drawn at their own odometry`);
    if (unplaced.length) notes.push(`no odometry yet from ${unplaced.join(", ")}`);
    setText($("#site-title"), cfg.name || "Site");
    setText($("#site-note"), notes.join(" · "));
    const legend = $("#site-legend");
    if (!legend.childElementCount) {
      for (const [k, text] of [["ok", "idle"], ["moving", "moving"], ["warn", "warning / paused"],
        ["error", "error / e-stop"], ["offline", "offline"]]) {
        legend.append(el("span", { class: `dot site-${k}` }), el("span", { text }));
      }
    }
  }
}
