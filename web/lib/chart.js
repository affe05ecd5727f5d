// Tiny canvas charts (no library): a rolling time-series chart, a 2D trajectory and a laser scan.
// Each draws only when asked (callers batch with requestAnimationFrame) and keeps bounded buffers.

function fit(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w: canvas.clientWidth, h: canvas.clientHeight };
}

const AXIS = "#8a94a6", GRID = "rgba(138,148,166,0.18)";

export class TimeChart {
  /** series: [{name, color}], windowS: seconds shown, capacity: points kept per series. */
  constructor(canvas, { series, windowS = 60, capacity = 1200, unit = "", min = null, max = null }) {
    this.canvas = canvas;
    this.series = series.map((s) => ({ ...s, t: new Float64Array(capacity), v: new Float64Array(capacity), n: 0, i: 0 }));
    this.windowS = windowS;
    this.capacity = capacity;
    this.unit = unit;
    this.fixedMin = min;
    this.fixedMax = max;
  }

  push(index, tMs, value) {
    const s = this.series[index];
    if (!Number.isFinite(value)) return;
    s.t[s.i] = tMs; s.v[s.i] = value;
    s.i = (s.i + 1) % this.capacity;
    s.n = Math.min(s.n + 1, this.capacity);
  }

  clear() { for (const s of this.series) { s.n = 0; s.i = 0; } }

  draw(nowMs = performance.now()) {
    const { ctx, w, h } = fit(this.canvas);
    ctx.clearRect(0, 0, w, h);
    const left = 44, right = 8, top = 18, bottom = 18;
    const t0 = nowMs - this.windowS * 1000;
    let lo = Infinity, hi = -Infinity;
    for (const s of this.series) {
      for (let k = 0; k < s.n; k++) {
        const j = (s.i - 1 - k + this.capacity) % this.capacity;
        if (s.t[j] < t0) break;
        lo = Math.min(lo, s.v[j]); hi = Math.max(hi, s.v[j]);
      }
    }
    if (this.fixedMin !== null) lo = this.fixedMin;
    if (this.fixedMax !== null) hi = Math.max(this.fixedMax, hi === -Infinity ? this.fixedMax : hi);
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-6) { hi += 0.5; lo -= 0.5; }
    const pad = (hi - lo) * 0.08;
    if (this.fixedMin === null) lo -= pad;
    hi += this.fixedMax === null ? pad : 0;
    const x = (t) => left + ((t - t0) / (this.windowS * 1000)) * (w - left - right);
    const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = AXIS; ctx.strokeStyle = GRID; ctx.lineWidth = 1;
    for (let g = 0; g <= 4; g++) {
      const v = lo + ((hi - lo) * g) / 4, yy = y(v);
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
      ctx.fillText(v.toFixed(Math.abs(hi - lo) < 3 ? 2 : 0), 2, yy + 4);
    }
    ctx.fillText(`-${this.windowS}s`, left, h - 4);
    ctx.fillText("now", w - right - 22, h - 4);
    let lx = left;
    for (const s of this.series) {
      ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
      let started = false;
      for (let k = s.n - 1; k >= 0; k--) {
        const j = (s.i - 1 - k + this.capacity) % this.capacity;
        if (s.t[j] < t0) continue;
        const px = x(s.t[j]), py = y(s.v[j]);
        if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; }
      }
      ctx.stroke();
      ctx.fillStyle = s.color;
      ctx.fillRect(lx, 4, 10, 10);
      ctx.fillStyle = AXIS;
      ctx.fillText(`${s.name}${this.unit ? ` (${this.unit})` : ""}`, lx + 14, 13);
      lx += ctx.measureText(s.name).width + 60;
    }
  }
}

export class TrajectoryView {
  constructor(canvas, capacity = 2000) {
    this.canvas = canvas;
    this.capacity = capacity;
    this.xs = new Float64Array(capacity); this.ys = new Float64Array(capacity);
    this.n = 0; this.i = 0; this.pose = null;
  }

  push(x, y, theta) {
    const last = (this.i - 1 + this.capacity) % this.capacity;
    if (this.n && Math.hypot(x - this.xs[last], y - this.ys[last]) < 0.02) { this.pose = { x, y, theta }; return; }
    this.xs[this.i] = x; this.ys[this.i] = y;
    this.i = (this.i + 1) % this.capacity; this.n = Math.min(this.n + 1, this.capacity);
    this.pose = { x, y, theta };
  }

  clear() { this.n = 0; this.i = 0; this.pose = null; }

  draw() {
    const { ctx, w, h } = fit(this.canvas);
    ctx.clearRect(0, 0, w, h);
    if (!this.n) { ctx.fillStyle = AXIS; ctx.fillText("no odometry yet", 10, 20); return; }
    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (let k = 0; k < this.n; k++) {
      minX = Math.min(minX, this.xs[k]); maxX = Math.max(maxX, this.xs[k]);
      minY = Math.min(minY, this.ys[k]); maxY = Math.max(maxY, this.ys[k]);
    }
    const span = Math.max(maxX - minX, maxY - minY, 2) * 1.15;
    const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2, scale = Math.min(w, h) / span;
    const px = (x) => w / 2 + (x - cx) * scale, py = (y) => h / 2 - (y - cy) * scale;
    ctx.strokeStyle = GRID; ctx.lineWidth = 1;
    const step = span > 20 ? 5 : 1;
    for (let g = Math.floor((cx - span) / step) * step; g < cx + span; g += step) {
      ctx.beginPath(); ctx.moveTo(px(g), 0); ctx.lineTo(px(g), h); ctx.stroke();
    }
    for (let g = Math.floor((cy - span) / step) * step; g < cy + span; g += step) {
      ctx.beginPath(); ctx.moveTo(0, py(g)); ctx.lineTo(w, py(g)); ctx.stroke();
    }
    ctx.strokeStyle = "#4da3ff"; ctx.lineWidth = 2; ctx.beginPath();
    const start = this.n < this.capacity ? 0 : this.i;
    for (let k = 0; k < this.n; k++) {
      const j = (start + k) % this.capacity;
      if (k) ctx.lineTo(px(this.xs[j]), py(this.ys[j])); else ctx.moveTo(px(this.xs[j]), py(this.ys[j]));
    }
    ctx.stroke();
    const p = this.pose;
    ctx.save(); ctx.translate(px(p.x), py(p.y)); ctx.rotate(-p.theta);
    ctx.fillStyle = "#ffb020"; ctx.beginPath(); ctx.moveTo(10, 0); ctx.lineTo(-6, 6); ctx.lineTo(-6, -6); ctx.closePath(); ctx.fill();
    ctx.restore();
    ctx.fillStyle = AXIS; ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(`x ${p.x.toFixed(2)} m  y ${p.y.toFixed(2)} m  grid ${step} m`, 6, h - 6);
  }
}

/** Draws a sensor_msgs/LaserScan around the robot (robot at the centre, x forward = up). */
export function drawScan(canvas, scan) {
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  if (!scan) { ctx.fillStyle = AXIS; ctx.fillText("no scan yet", 10, 20); return; }
  const maxR = Math.min(scan.range_max || 12, 12);
  const scale = (Math.min(w, h) / 2 - 6) / maxR;
  ctx.strokeStyle = GRID;
  for (let r = 2; r <= maxR; r += 2) { ctx.beginPath(); ctx.arc(w / 2, h / 2, r * scale, 0, 2 * Math.PI); ctx.stroke(); }
  ctx.fillStyle = "#39d98a";
  const ranges = scan.ranges || [];
  for (let k = 0; k < ranges.length; k++) {
    const r = ranges[k];
    if (!(r >= scan.range_min && r <= scan.range_max)) continue;
    const a = scan.angle_min + k * scan.angle_increment;
    ctx.fillRect(w / 2 - Math.sin(a) * r * scale - 1.5, h / 2 - Math.cos(a) * r * scale - 1.5, 3, 3);
  }
  ctx.fillStyle = "#ffb020"; ctx.fillRect(w / 2 - 3, h / 2 - 3, 6, 6);
  ctx.fillStyle = AXIS; ctx.fillText(`rings 2 m, ${ranges.length} beams`, 6, h - 6);
}
